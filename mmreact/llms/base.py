"""The one interface every LLM backend implements: ``complete(request) -> Completion``.

Streaming is a thin layer on top: a backend that can stream calls ``request.on_text`` with each
chunk as it arrives. Provider quirks stay in the provider's module.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..protocol import Call
    from ..tools import Tool
    from .formats import TextFormat

Role = Literal["system", "user", "assistant", "observation"]
#: ``"react"``: one agent step; ``"text"``: a plain chat reply (see :class:`LLMRequest`).
Kind = Literal["react", "text"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the transcript.

    ``observation`` messages carry tool results; text-ReAct backends send them as ``user``
    messages, native tool-calling backends as ``tool`` messages (one per entry of ``results``,
    matched to the assistant message's ``calls`` by id).
    """

    role: Role
    content: str
    calls: tuple[Call, ...] = ()
    results: tuple[tuple[str, str], ...] = ()  # (call id, observation text)


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """What the engine (or any caller) asks of the model.

    ``kind`` says what the reply is for. ``"react"`` is one agent step: backends that constrain
    decoding draw it from the step language of :mod:`mmreact.llms.grammar` (built from ``tools``,
    ``handles`` and ``done_calls``), and tool-calling backends send the tools. ``"text"`` (the
    default) is a plain chat reply, as any chat model gives: no step grammar and no tools; when
    ``text_format`` is set, backends that can enforce a language (llama.cpp, transformers) keep the
    reply inside it, and the others are asked for it in the prompt only (check with
    ``text_format.accepts``).
    """

    messages: Sequence[Message]
    stop: tuple[str, ...] = ()
    #: The tools the model may call and the image handles that exist, so that backends which
    #: constrain decoding (grammars) only allow well-formed, valid steps.
    tools: Sequence[Tool] = ()
    handles: tuple[str, ...] = ()
    #: Canonical text of calls already made in this session (see ``Call.canonical``).
    done_calls: frozenset[str] = frozenset()
    max_tokens: int = 512
    on_text: Callable[[str], None] | None = None
    kind: Kind = "text"
    text_format: TextFormat | None = None
    #: Grounded answers (see :mod:`mmreact.grounding`): the word sequences a final answer must be
    #: drawn from (one run of consecutive words of one of them). Backends that constrain decoding
    #: keep the answer inside them and say so in ``Completion.meta["grounded"]``; the others ignore
    #: it. ``None``: the answer is free.
    answer_phrases: tuple[tuple[str, ...], ...] | None = None
    #: How relevant each of ``answer_phrases`` is to the question (cosine similarity of sentence
    #: embeddings, :func:`mmreact.grounding.relevance`), for backends that rank whole phrases
    #: (``LLM.ranks_answers``); ``None``: not computed.
    answer_relevance: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """The model's reply. Native tool-calling backends fill ``calls`` (text may then be a thought)."""

    text: str
    calls: tuple[Call, ...] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Seconds spent waiting for a model shared with other threads (its lock) before this reply
    #: started: part of the wall time of ``complete``, but not the model's own time.
    wait_seconds: float = 0.0


class LLM(abc.ABC):
    """Base class of LLM backends."""

    #: Short description for traces, e.g. ``"scripted"`` or ``"gguf:SmolLM2-135M"``.
    name: str = "llm"
    #: Whether agent steps start with a thought. Backends that decide without one (the embedded
    #: default) set ``False``: the system prompt then shows the format without a thought.
    writes_thoughts: bool = True
    #: Whether the model computes on this machine (llama.cpp, transformers): prefetching experts
    #: alongside it competes for the same cores (see :mod:`mmreact.prefetch`).
    runs_locally: bool = False
    #: Whether the first step of a question must call a tool when one is allowed (a grammar rule
    #: of the embedded default), so that a lone tool's call is certain before the model runs.
    first_step_acts: bool = False
    #: Whether this backend can keep a final answer inside ``LLMRequest.answer_phrases`` (it
    #: decodes under a grammar), and whether it does so unless told otherwise (``Agent(grounding=
    #: "auto")``; see :mod:`mmreact.grounding` for the measurements behind each default).
    grounds_answers: bool = False
    grounds_by_default: bool = False
    #: Whether, when a step can only be a grounded answer without a thought, this backend scores
    #: every whole phrase by the model's likelihood and picks the best (exact search over the
    #: candidates, instead of greedy decoding; see :func:`mmreact.llms.grammar.run_step`).
    ranks_answers: bool = False

    @abc.abstractmethod
    def complete(self, request: LLMRequest) -> Completion:
        """Produce the next reply. Raise :class:`mmreact.errors.LLMError` on failure."""

    def load(self) -> None:
        """Load the model now (backends load lazily on the first :meth:`complete` otherwise).

        Local backends override this; remote ones have nothing to load.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def on_this_machine(url: str | None) -> bool:
    """Whether a model server's URL names this machine: a loopback address (``localhost``,
    127.0.0.0/8, ``::1``) or ``0.0.0.0``. A server elsewhere on the network, or a host name that
    is not ``localhost``, counts as another machine (nothing is looked up)."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = urlsplit(str(url or "")).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` dicts for text-ReAct chat backends (observations -> user)."""
    out: list[dict[str, str]] = []
    for m in messages:
        role = "user" if m.role == "observation" else m.role
        if out and out[-1]["role"] == role and role == "user":
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n\n" + m.content}
        else:
            out.append({"role": role, "content": m.content})
    return out

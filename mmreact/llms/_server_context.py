"""The request must fit: a reply's token budget inside the model server's context.

A constrained step asks for room for its language's longest reply (``FULL``: about 3,000 tokens;
:mod:`mmreact.llms.server_grammar`), and a server refuses a request whose prompt plus
``max_tokens`` pass its context: vLLM answers HTTP 400 ("This model's maximum context length is
4096 tokens and your request has 3100 input tokens ..."). Used by the ``openai:`` backend.

Decisions:

* **The context** is what ``GET /v1/models`` says (vLLM's ``max_model_len``, read with the server
  kind, once), else what the first refusal names. Without either, requests go out as asked.
* **The prompt's size** is estimated from its characters (the JSON of its messages and tools), at
  the rate the server last counted (its ``usage.prompt_tokens`` for the characters of the request
  before), or 1 token per 2 characters until it has counted one (English runs near 4 characters a
  token, so the first guess leaves room), plus 5% and 16 tokens. ``max_tokens`` is then at most
  the context less that estimate.
* **A refusal that names the sizes** (vLLM and SGLang's messages, llama.cpp's ``n_prompt_tokens`` /
  ``n_ctx``) is sent again once with the room the server named; the server's count also corrects
  the rate. When the prompt alone fills the context nothing is sent again (a retry without the
  grammar would carry the same prompt): :class:`~mmreact.errors.LLMError`, one sentence.
* A budget smaller than the language's longest reply can cut a reply short (``finish_reason``
  ``length``): a cut step fails to parse and the model is asked again, as with any unusable reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Tokens per character before the server has counted a prompt (about half of English's rate).
FIRST_RATE = 0.5
#: Margin on an estimated prompt: this fraction, plus :data:`SLACK` tokens (the chat template).
MARGIN = 0.05
SLACK = 16
_KEYS = ("max_tokens", "max_completion_tokens")
_CONTEXT = (re.compile(r"maximum context length (?:is|of) (\d+)", re.I),
            re.compile(r"model'?s context length \((\d+) tokens\)", re.I),
            re.compile(r"context (?:size|window|length) (?:is|of) (\d+)", re.I))
_PROMPT = (re.compile(r"request has (\d+) input tokens", re.I), re.compile(r"\((\d+) in the messages", re.I),
           re.compile(r"(\d+) tokens from the input messages", re.I), re.compile(r"input \((\d+) tokens\)", re.I))
_OVERFLOW = re.compile(r"context (?:length|size|window)|exceed_context_size", re.I)


@dataclass(frozen=True, slots=True)
class Overflow:
    """A server's refusal of a request too long for its context: the sizes it named, if any."""

    context: int | None
    prompt: int | None


def overflow(body: Any, message: str) -> Overflow | None:
    """The sizes in a refusal (``body``: the error object of a 400, ``message`` its text), or
    ``None`` when the refusal is about something else."""
    fields = body if isinstance(body, Mapping) else {}
    text = " ".join(str(x) for x in (message, fields.get("message"), fields.get("type")) if x)
    if not _OVERFLOW.search(text) and "n_ctx" not in fields:
        return None

    def first(patterns: tuple[re.Pattern[str], ...], key: str) -> int | None:
        value = fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        for pattern in patterns:
            found = pattern.search(text)
            if found:
                return int(found.group(1))
        return None

    return Overflow(first(_CONTEXT, "n_ctx"), first(_PROMPT, "n_prompt_tokens"))


def context_of(models: Any, model: str) -> int | None:
    """The context in a ``GET /v1/models`` list (vLLM's ``max_model_len``): the model's own
    entry's, or the only entry's."""
    sizes = {getattr(m, "id", None): getattr(m, "max_model_len", None) for m in models or ()}
    size = sizes.get(model, next(iter(sizes.values())) if len(sizes) == 1 else None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def prompt_chars(params: Mapping[str, Any]) -> int:
    """The size of a request's prompt in characters: the JSON of its messages and tools."""
    return sum(len(json.dumps(params.get(k) or [], ensure_ascii=False)) for k in ("messages", "tools"))


class Room:
    """What one backend knows of its server's context, and the budgets that fit in it."""

    def __init__(self) -> None:
        #: The server's context in tokens (``None``: unknown, nothing is fitted).
        self.context: int | None = None
        #: Tokens per prompt character, as the server last counted them.
        self.rate: float | None = None
        #: Whether the model list was read for the context already.
        self.asked = False

    def estimate(self, chars: int) -> int:
        """The prompt's tokens, estimated from its characters (generously)."""
        return int(chars * (self.rate or FIRST_RATE) * (1 + MARGIN)) + SLACK

    def fit(self, params: dict[str, Any]) -> None:
        """Lower the request's ``max_tokens`` (or ``max_completion_tokens``) to the room its
        prompt leaves in the context (at least 1: the server has the last word)."""
        if self.context is None:
            return
        for key in _KEYS:
            if isinstance(params.get(key), int):
                params[key] = max(1, min(params[key], self.context - self.estimate(prompt_chars(params))))

    def learn(self, params: Mapping[str, Any], prompt_tokens: Any) -> None:
        """Take the server's count of a prompt it answered."""
        chars = prompt_chars(params)
        if isinstance(prompt_tokens, int) and prompt_tokens > 0 and chars > 0:
            self.rate = prompt_tokens / chars

    def refit(self, params: dict[str, Any], refused: Overflow) -> str | None:
        """After a refusal: learn what it named and lower the budget to the room left (exactly,
        when the server counted the prompt). Returns why no request can fit (a clause to follow
        "the server at URL refused the request:"), else ``None``."""
        if refused.context is not None:
            self.context = refused.context
        if refused.prompt is not None:
            self.learn(params, refused.prompt)
        if self.context is None:
            return None
        if refused.prompt is None:  # fit by the estimate, unless the prompt alone seems to fill it
            if self.estimate(prompt_chars(params)) < self.context:
                self.fit(params)
            return None
        if refused.prompt >= self.context:
            return (f"the conversation ({refused.prompt:,} tokens) no longer fits its {self.context:,}-token "
                    "context; start a new chat, ask about fewer images, or serve the model with a longer context")
        for key in _KEYS:
            if isinstance(params.get(key), int):
                params[key] = max(1, min(params[key], self.context - refused.prompt))
        return None


def budget(params: Mapping[str, Any]) -> int | None:
    """The request's ``max_tokens`` (or ``max_completion_tokens``)."""
    return next((params[k] for k in _KEYS if isinstance(params.get(k), int)), None)

"""Any mmreact LLM backend as a LangChain chat model, e.g. the embedded offline model::

    from mmreact.llms.langchain_chat import MMReactChatModel
    chat = MMReactChatModel(llm="default")   # or an LLM object, or "openai:...", "scripted:..."
    chat.invoke("Say hi")

Decisions:

* Messages map by type: system -> ``system``, human -> ``user``, AI -> ``assistant``, tool and
  function results -> ``observation`` (sent to the backend as user turns).
* ``stop`` strings are honoured here as well, whatever the backend does: the reply is cut at the
  first one, as LangChain expects. Streaming holds back just enough text to never emit a stop
  string.
* ``_stream`` runs the backend's ``complete`` in a worker thread and yields each ``on_text`` chunk
  as it arrives; a backend that does not stream yields its whole reply as one chunk.
* No tool calling (``bind_tools`` is not implemented): mmreact backends speak text ReAct.
* ``temperature`` is recorded for tracing only; sampling is the wrapped backend's own setting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from .base import Completion, LLMRequest, Message
from .langchain import message_text

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "observation", "function": "observation"}
_CHAT_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}
_DONE = object()


class MMReactChatModel(BaseChatModel):
    """A LangChain ``BaseChatModel`` that answers with an mmreact :class:`LLM` backend."""

    llm: Any = Field(default="default", description="An mmreact LLM, or a spec string for load_llm.")
    max_tokens: int = 512
    stop: list[str] | None = None
    temperature: float | None = None

    def __init__(self, **kwargs: Any) -> None:
        from . import load_llm

        # Resolved before pydantic sees it, so a bad spec is one ConfigError sentence, not a ValidationError.
        kwargs["llm"] = load_llm(kwargs.get("llm", "default"))
        super().__init__(**kwargs)

    @property
    def _llm_type(self) -> str:
        return "mmreact"

    @property
    def model_name(self) -> str:
        return str(self.llm.name)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"llm": self.model_name, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(ls_provider="mmreact", ls_model_type="chat",
                                 ls_model_name=model if isinstance(model, str) else self.model_name)
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        params["ls_max_tokens"] = int(kwargs.get("max_tokens") or self.max_tokens)
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # -- generation ---------------------------------------------------------------------------
    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
                 on_text: Any = None) -> LLMRequest:
        stops = stop if stop is not None else (self.stop or [])
        return LLMRequest(messages=to_mmreact(messages), stop=tuple(s for s in stops if s),
                          max_tokens=int(kwargs.get("max_tokens") or self.max_tokens), on_text=on_text)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        done = self.llm.complete(request)
        message = AIMessage(content=cut_at_stop(done.text, request.stop), usage_metadata=usage(done),
                            response_metadata=self._metadata(done))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        pieces: queue.Queue[Any] = queue.Queue()
        request = self._request(messages, stop, kwargs, on_text=pieces.put)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["done"] = self.llm.complete(request)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                outcome["error"] = exc
            finally:
                pieces.put(_DONE)

        threading.Thread(target=work, name="mmreact-lc-stream", daemon=True).start()
        guard = StopGuard(request.stop)
        streamed = False
        while (item := pieces.get()) is not _DONE:
            streamed = True
            if text := guard.feed(item):
                yield self._chunk(text, run_manager)
        if "error" in outcome:
            raise outcome["error"]
        done: Completion = outcome["done"]
        tail = guard.flush() if streamed else cut_at_stop(done.text, request.stop)
        if tail:
            yield self._chunk(tail, run_manager)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage(done),
                                                         response_metadata=self._metadata(done),
                                                         chunk_position="last"))

    def _chunk(self, text: str, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
        if run_manager is not None:
            run_manager.on_llm_new_token(text, chunk=chunk)
        return chunk

    def _metadata(self, done: Completion) -> dict[str, Any]:
        meta = {k: v for k, v in done.meta.items() if isinstance(v, (str, int, float, bool)) or v is None}
        return {"model_name": self.model_name, "model_provider": "mmreact", **meta}


def to_mmreact(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as mmreact messages (unknown roles count as user turns)."""
    out = []
    for m in messages:
        role = _ROLES.get(m.type) or _CHAT_ROLES.get(str(getattr(m, "role", "")).lower(), "user")
        out.append(Message(role, message_text(m)))  # type: ignore[arg-type]
    return out


def usage(done: Completion) -> UsageMetadata | None:
    if done.prompt_tokens is None and done.completion_tokens is None:
        return None
    i, o = done.prompt_tokens or 0, done.completion_tokens or 0
    return UsageMetadata(input_tokens=i, output_tokens=o, total_tokens=i + o)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first stop string (LangChain's contract for ``stop``)."""
    cuts = [i for s in stops if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


class StopGuard:
    """Streams text up to the first stop string, holding back only what could start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.buffer += text
        cut = cut_at_stop(self.buffer, self.stops)
        if len(cut) < len(self.buffer):
            self.stopped, self.buffer = True, ""
            return cut
        ready = len(self.buffer) - self.keep
        if ready <= 0:
            return ""
        out, self.buffer = self.buffer[:ready], self.buffer[ready:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out

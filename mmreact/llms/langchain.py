"""Any LangChain chat model (``BaseChatModel``) as an mmreact :class:`~mmreact.llms.base.LLM`.

``Agent(llm=ChatOpenAI(...))`` lands here through :func:`mmreact.llms.load_llm`.

Decisions:

* **Modes** as in the OpenAI backend. ``"text"``: the transcript becomes ``SystemMessage`` /
  ``HumanMessage`` / ``AIMessage`` (observations as human messages) and ``invoke(..., stop=...)``.
  ``"tools"``: ``bind_tools`` with the tools' JSON schemas in OpenAI's function format, replies'
  ``tool_calls`` become :class:`~mmreact.protocol.Call` objects, results go back as ``ToolMessage``
  objects, and a reply without tool calls is the final answer. ``"auto"`` (default) uses tools when
  the model's class implements ``bind_tools`` (the same test ``langchain-tests`` uses).
* A tool call whose arguments were not valid JSON (LangChain's ``invalid_tool_calls``) becomes a
  call that fails validation, so the model reads an error observation instead of the run crashing.
* With ``request.on_text`` set the model is driven through ``.stream()``; token counts come from
  ``usage_metadata`` when the model reports it.
* Whatever the chat model raises becomes one :class:`~mmreact.errors.LLMError` sentence.
* The reply-length limit is left to the chat model's own settings (LangChain has no common
  per-call ``max_tokens`` argument).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, LLMError, one_line
from ..protocol import Call, new_call_id
from .base import LLM, Completion, LLMRequest, Message, chat_messages
from .openai import (
    INVALID_ARGUMENTS,
    TOOLS_NOTE,
    call_arguments,
    final_text,
    tool_call,
    tool_rounds,
    tool_specs,
)

if TYPE_CHECKING:
    from ..tools import Tool

Mode = Literal["auto", "text", "tools"]


def supports_tools(chat_model: Any) -> bool:
    """Whether the model's class implements ``bind_tools`` (the base class only raises)."""
    from langchain_core.language_models import BaseChatModel

    impl = getattr(type(chat_model), "bind_tools", None)
    return impl is not None and impl is not BaseChatModel.bind_tools


def model_label(chat_model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(chat_model, attr, None)
        if isinstance(value, str) and value:
            return value
    llm_type = getattr(chat_model, "_llm_type", None)
    return llm_type if isinstance(llm_type, str) and llm_type else type(chat_model).__name__


class LangChainLLM(LLM):
    """Adapter from a LangChain chat model to mmreact's LLM interface.

    Args:
        chat_model: any ``langchain_core`` ``BaseChatModel`` (``ChatOpenAI``, ``ChatOllama``, fakes...).
        mode: ``"text"``, ``"tools"`` or ``"auto"`` (see the module docstring).
    """

    def __init__(self, chat_model: Any, *, mode: Mode = "auto") -> None:
        try:
            from langchain_core.language_models import BaseChatModel
        except ImportError:
            raise ConfigError("The LangChain adapter needs langchain-core: pip install langchain-core.") from None
        if not isinstance(chat_model, BaseChatModel):
            raise ConfigError(
                f"LangChainLLM needs a LangChain chat model (BaseChatModel), got a {type(chat_model).__name__}."
            )
        if mode not in ("auto", "text", "tools"):
            raise ConfigError(f"LangChain mode must be 'auto', 'text' or 'tools', got {mode!r}.")
        can_tool = supports_tools(chat_model)
        if mode == "tools" and not can_tool:
            raise ConfigError(
                f"The chat model {type(chat_model).__name__} has no tool calling (bind_tools); use mode='text'."
            )
        self.chat_model = chat_model
        self.mode: Literal["text", "tools"] = ("tools" if can_tool else "text") if mode == "auto" else mode
        self.name = f"langchain:{model_label(chat_model)}"
        self._bound: tuple[tuple[int, ...], Any] | None = None

    @property
    def runs_locally(self) -> bool:
        """Whether the chat model's server is this machine (``ChatOllama``'s default
        ``localhost:11434``, a ``ChatOpenAI`` pointed at 127.0.0.1): its ``base_url`` or
        ``openai_api_base`` is a loopback address. A model with neither is taken as hosted."""
        from .base import on_this_machine

        url = getattr(self.chat_model, "base_url", None) or getattr(self.chat_model, "openai_api_base", None)
        return isinstance(url, str) and on_this_machine(url)

    def _with_tools(self, tools: Sequence[Tool]) -> Any:
        key = tuple(id(t) for t in tools)
        if self._bound is None or self._bound[0] != key:
            try:
                bound = self.chat_model.bind_tools(tool_specs(tools))
            except NotImplementedError:
                raise ConfigError(f"The chat model {self.name} has no tool calling; use mode='text'.") from None
            except Exception as exc:  # noqa: BLE001 - a provider's own validation error
                msg = f"The chat model {self.name} could not take the tools: {one_line(exc)}"
                raise LLMError(_sentence(msg)) from None
            self._bound = (key, bound)
        return self._bound[1]

    def complete(self, request: LLMRequest) -> Completion:
        tools = self.mode == "tools" and request.kind == "react" and bool(request.tools)
        kwargs: dict[str, Any] = {}
        if tools:
            runnable = self._with_tools(request.tools)
            messages = langchain_messages(request.messages, request.tools, note=TOOLS_NOTE)
        else:
            runnable = self.chat_model
            messages = text_messages(request.messages)
            if request.stop:
                kwargs["stop"] = list(request.stop)
        t0 = time.perf_counter()
        first: float | None = None
        try:
            if request.on_text is None:
                reply = runnable.invoke(messages, **kwargs)
            else:
                reply = None
                for chunk in runnable.stream(messages, **kwargs):
                    piece = message_text(chunk)
                    if piece:
                        first = time.perf_counter() - t0 if first is None else first
                        request.on_text(piece)
                    reply = chunk if reply is None else reply + chunk
        except LLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - any provider error becomes one sentence
            raise LLMError(_sentence(f"The LangChain chat model {self.name} failed: {one_line(exc)}")) from None
        seconds = time.perf_counter() - t0
        content = message_text(reply) if reply is not None else ""
        calls = reply_calls(reply) if tools and reply is not None else ()
        usage = getattr(reply, "usage_metadata", None) or {}
        meta: dict[str, Any] = {"seconds": seconds, "mode": "tools" if tools else "text"}
        finish = (getattr(reply, "response_metadata", None) or {}).get("finish_reason")
        if finish:
            meta["finish_reason"] = finish
        if first is not None:
            meta["first_token_seconds"] = first
        return Completion(
            text=content if calls or not tools else final_text(content), calls=calls or None,
            prompt_tokens=usage.get("input_tokens"), completion_tokens=usage.get("output_tokens"), meta=meta,
        )


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def message_text(message: Any) -> str:
    """The text of a LangChain message (``.text`` is a property in langchain-core 1.x, a method before)."""
    text = getattr(message, "text", None)
    if isinstance(text, str):  # 1.x: a str that is also callable (deprecated), so test str first
        return str(text)
    if callable(text):
        text = text()
        if isinstance(text, str):
            return text
    content = getattr(message, "content", "")
    return content if isinstance(content, str) else ""


def reply_calls(reply: Any) -> tuple[Call, ...]:
    """Tool calls of an ``AIMessage``; invalid ones keep their raw arguments so validation fails."""
    calls = [tool_call(tc.get("id"), tc.get("name") or "", tc.get("args") or {})
             for tc in getattr(reply, "tool_calls", None) or ()]
    calls += [Call(tc.get("name") or "", (), {INVALID_ARGUMENTS: tc.get("args") or ""}, tc.get("id") or new_call_id())
              for tc in getattr(reply, "invalid_tool_calls", None) or ()]
    return tuple(calls)


def text_messages(messages: Sequence[Message]) -> list[Any]:
    """Text ReAct: system / human / AI messages (observations as human messages)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m["role"]](content=m["content"]) for m in chat_messages(messages)]


def langchain_messages(messages: Sequence[Message], tools: Sequence[Tool] = (), *,
                       note: str | None = None) -> list[Any]:
    """Native tool calling: AI messages carry ``tool_calls``, results go back as ``ToolMessage``."""
    from langchain_core.messages import (
        AIMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )

    out: list[Any] = []
    noted = note is None
    for m, native in tool_rounds(messages):
        if m.role == "system":
            out.append(SystemMessage(content=m.content if noted else f"{m.content}\n\n{note}"))
            noted = True
        elif m.role == "assistant":
            valid, invalid = [], []
            for c in m.calls:
                args = call_arguments(c, tools)
                if set(args) == {INVALID_ARGUMENTS}:
                    invalid.append({"type": "invalid_tool_call", "id": c.id, "name": c.tool,
                                    "args": str(args[INVALID_ARGUMENTS]), "error": "arguments are not a JSON object"})
                else:
                    valid.append({"type": "tool_call", "id": c.id, "name": c.tool, "args": args})
            out.append(AIMessage(content=m.content, tool_calls=valid, invalid_tool_calls=invalid))
        elif native:
            out.extend(ToolMessage(content=text, tool_call_id=cid) for cid, text in m.results)
        else:
            out.append(HumanMessage(content=m.content))
    if not noted:
        out.insert(0, SystemMessage(content=note))
    return out

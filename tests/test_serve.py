"""`mmreact serve` through the real `openai` SDK (max_retries=0) against a real server on 127.0.0.1:
answers, streaming order, multi-turn, models, and every error status with the SDK's exception."""

from __future__ import annotations

import base64
import json
import threading

import httpx
import openai
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")

from mmreact import Agent, ScriptedLLM  # noqa: E402
from mmreact.errors import ConfigError, LLMError  # noqa: E402
from mmreact.serve import ServeConfig, create_app  # noqa: E402
from serve_helpers import (CountingLLM, data_url, hash_planner, image_array, image_message,  # noqa: E402
                           make_hash_tool, png_bytes, running, sha, wait_for)

MODEL = "mmreact"


def client(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def hash_server():
    llm = CountingLLM([hash_planner], repeat_last=True)
    agent = Agent(llm, tools=[make_hash_tool()], max_steps=4)
    with running(create_app(agent, ServeConfig(max_concurrency=4, max_queue=8))) as base:
        yield base, llm


# -- answers -----------------------------------------------------------------------------------
def test_non_streaming_answer_trace_and_usage(hash_server):
    base, _ = hash_server
    img = image_array(1)
    out = client(base).chat.completions.create(model=MODEL, messages=[image_message("What is its hash?", img)])
    choice = out.choices[0]
    assert choice.message.content == sha(img)
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    reasoning = choice.message.reasoning_content
    assert "Action: image_hash(image_1)" in reasoning and f"hash={sha(img)}" in reasoning
    trace = out.model_extra["mmreact"]["trace"]
    assert out.model_extra["mmreact"]["status"] == "answered"
    assert [c["call"] for s in trace["steps"] for c in s["calls"]] == ["image_hash(image_1)"]
    assert trace["images"][0]["sha256"] == sha(img)
    steps = trace["steps"]
    assert out.usage.prompt_tokens == sum(s["prompt_tokens"] for s in steps) > 0
    assert out.usage.completion_tokens == sum(s["completion_tokens"] for s in steps) > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_streaming_chunk_order_usage_and_done(hash_server):
    base, _ = hash_server
    img = image_array(2)
    stream = client(base).chat.completions.create(model=MODEL, messages=[image_message("hash?", img)], stream=True,
                                                  stream_options={"include_usage": True})
    chunks = list(stream)
    kinds = []
    for c in chunks:
        if not c.choices:
            kinds.append("usage")
            continue
        delta, extra = c.choices[0].delta, c.model_extra or {}
        if delta.role == "assistant":
            kinds.append("role")
        elif "step" in extra.get("mmreact", {}):
            kinds.append("step")
        elif delta.content:
            kinds.append("answer")
        elif c.choices[0].finish_reason:
            kinds.append("finish")
        elif (delta.model_extra or {}).get("reasoning_content"):
            kinds.append("text")
        assert not delta.tool_calls
    assert kinds == ["role", "text", "step", "text", "step", "answer", "finish", "usage"]
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert answer == sha(img)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].model_extra["mmreact"]["trace"]["answer"] == sha(img)
    steps = chunks[-2].model_extra["mmreact"]["trace"]["steps"]
    assert chunks[-1].usage.total_tokens == sum(s["prompt_tokens"] + s["completion_tokens"] for s in steps) > 0
    # the streamed reasoning is the non-streamed reasoning_content
    streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                       for c in chunks if c.choices).strip()
    once = client(base).chat.completions.create(model=MODEL, messages=[image_message("hash?", img)])
    assert streamed == once.choices[0].message.reasoning_content


def test_stream_wire_format_ends_with_done(hash_server):
    base, _ = hash_server
    body = {"model": MODEL, "messages": [image_message("hash?", image_array(3))], "stream": True}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert all(json.loads(d)["object"] == "chat.completion.chunk" for d in data[:-1])


def test_two_turn_conversation_resending_history(hash_server):
    base, llm = hash_server
    first, second = image_array(4), image_array(5)
    c = client(base)
    messages = [{"role": "system", "content": "You are helpful."}, image_message("What is the hash?", first)]
    a1 = c.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content
    assert a1 == sha(first)
    messages += [{"role": "assistant", "content": a1}, image_message("And of this one?", second)]
    n_before = len(llm.requests)
    out = c.chat.completions.create(model=MODEL, messages=messages)
    assert out.choices[0].message.content == sha(second)
    trace = out.model_extra["mmreact"]["trace"]
    assert [(i["handle"], i["sha256"]) for i in trace["images"]] == [("image_1", sha(first)), ("image_2", sha(second))]
    prompt = llm.requests[n_before].messages[-1].content
    assert f"User (image_1): What is the hash?\nAssistant: {a1}\nNow the user asks (image_2):\nAnd of this one?" in prompt
    assert "You are helpful" not in prompt  # system messages are not replayed


def test_models_and_health(hash_server):
    base, _ = hash_server
    assert [m.id for m in client(base).models.list()] == [MODEL]
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["tools"] == ["image_hash"]
    assert {"running", "queued", "max_concurrency", "max_queue"} <= set(health)


# -- 400 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, needle", [
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,####"}}, {"type": "text", "text": "q"}],
     "not valid base64"),
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"not a png" * 50).decode()}},
      {"type": "text", "text": "q"}], "not an image file"),
    ([{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGVsbG8="}}, {"type": "text", "text": "q"}],
     "not image/*"),
    ([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, {"type": "text", "text": "q"}],
     "remote URL"),
    ([{"type": "image_url", "image_url": {"url": data_url(image_array(6))}}], "has no text"),
    ([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, {"type": "text", "text": "q"}],
     "does not accept"),
])
def test_bad_content_is_400_without_echoing_data(hash_server, content, needle):
    base, _ = hash_server
    with pytest.raises(openai.BadRequestError) as info:
        client(base).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    message = info.value.body["message"]
    assert needle in message
    assert info.value.body["type"] == "invalid_request_error"
    assert "base64," not in message and "aGVsbG8" not in message and len(message) < 300


@pytest.mark.parametrize("extra, param", [({"n": 2}, "n"), ({"tools": [{"type": "function", "function": {"name": "f"}}]},
                                                             "tools"), ({"logprobs": True}, "logprobs"),
                                           ({"response_format": {"type": "json_object"}}, "response_format")])
def test_unsupported_parameters_are_400(hash_server, extra, param):
    base, _ = hash_server
    with pytest.raises(openai.BadRequestError) as info:
        client(base).chat.completions.create(model=MODEL, messages=[image_message("q", image_array(7))], **extra)
    assert info.value.body["param"] == param


def test_bad_json_and_tool_messages_are_400(hash_server):
    base, _ = hash_server
    r = httpx.post(f"{base}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="runs its own tools"):
        client(base).chat.completions.create(model=MODEL, messages=[
            {"role": "tool", "tool_call_id": "x", "content": "42"}, {"role": "user", "content": "q"}])


def test_odd_text_is_handled(hash_server):
    base, _ = hash_server
    url = f"{base}/v1/chat/completions"
    deep = b'{"model": "mmreact", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(url, content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="at most 20,000"):
        client(base).chat.completions.create(model=MODEL, messages=[image_message("x" * 20_001, image_array(15))])
    # a lone surrogate is valid JSON but not UTF-8: it is replaced, and the answer still comes back
    img = image_array(16)
    body = json.dumps({"model": MODEL, "messages": [image_message("hash \ud800?", img)]})  # ASCII, with \\ud800
    r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)
    assert r.json()["mmreact"]["trace"]["question"] == "hash ??"


def test_unknown_model_is_404(hash_server):
    base, _ = hash_server
    with pytest.raises(openai.NotFoundError) as info:
        client(base).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"


# -- 401, 413, 429, 502, 503, 504 ---------------------------------------------------------------------
def test_api_key_401():
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()])
    with running(create_app(agent, ServeConfig(api_keys=("k-one", "k-two")))) as base:
        for bad in ("wrong", "k-one-and-more", "k-on"):
            with pytest.raises(openai.AuthenticationError):
                client(base, bad).models.list()
        with pytest.raises(openai.AuthenticationError):
            client(base, "nope").chat.completions.create(model=MODEL, messages=[image_message("q", image_array(8))])
        assert httpx.post(f"{base}/v1/chat/completions", json={}).status_code == 401  # no header at all
        assert "tools" not in httpx.get(f"{base}/health").json()  # what runs here only with a key
        assert httpx.get(f"{base}/health", headers={"Authorization": "Bearer k-two"}).json()["tools"] == ["image_hash"]
        img = image_array(8)
        for good in ("k-one", "k-two"):
            out = client(base, good).chat.completions.create(model=MODEL, messages=[image_message("q", img)])
            assert out.choices[0].message.content == sha(img)


def test_body_too_large_is_413():
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()])
    with running(create_app(agent, ServeConfig(max_body_bytes=200_000))) as base:
        big = image_array(9, size=(300, 300))  # ~270 KB of noise as PNG, ~360 KB as base64
        with pytest.raises(openai.APIStatusError) as info:
            client(base).chat.completions.create(model=MODEL, messages=[image_message("q", big)])
        assert info.value.status_code == 413
        assert info.value.body["code"] == "request_too_large"
        # without Content-Length (chunked upload): refused while reading
        def chunks():
            yield b'{"model": "mmreact", "messages": [{"role": "user", "content": "'
            for _ in range(50):
                yield b"x" * 10_000
            yield b'"}]}'
        r = httpx.post(f"{base}/v1/chat/completions", content=chunks())
        assert r.status_code == 413
        small = image_array(10)
        assert client(base).chat.completions.create(model=MODEL, messages=[image_message("q", small)]) \
            .choices[0].message.content == sha(small)


def test_queue_full_429_with_retry_after():
    gate = threading.Event()
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool(gate=gate)])
    app = create_app(agent, ServeConfig(max_concurrency=1, max_queue=1))
    with running(app) as base:
        state = app.state.mmreact
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(client(base).chat.completions.create(
            model=MODEL, messages=[image_message("q", image_array(20 + i))]).choices[0].message.content))
                   for i in range(2)]
        try:
            for t in threads:
                t.start()
            assert wait_for(lambda: state.admission.running == 1 and state.admission.queued == 1)
            with pytest.raises(openai.RateLimitError) as info:
                client(base).chat.completions.create(model=MODEL, messages=[image_message("q", image_array(30))])
            assert int(info.value.response.headers["retry-after"]) >= 1
            assert info.value.body["code"] == "queue_full"
        finally:
            gate.set()
            for t in threads:
                t.join(20)
        assert sorted(results) == sorted(sha(image_array(20 + i)) for i in range(2))
        assert state.admission.counts["rejected"] == 1


def test_llm_failure_is_502_with_partial_trace():
    def fail(request):
        raise LLMError("the model server is unreachable")

    agent = Agent(ScriptedLLM([hash_planner, fail]), tools=[make_hash_tool()])
    with running(create_app(agent)) as base:
        with pytest.raises(openai.InternalServerError) as info:
            client(base).chat.completions.create(model=MODEL, messages=[image_message("q", image_array(11))])
        assert info.value.status_code == 502
        body = info.value.body
        assert "unreachable" in body["message"] and body["code"] == "llm_error"
        assert [c["call"] for s in body["mmreact"]["trace"]["steps"] for c in s["calls"]] == ["image_hash(image_1)"]
        # streaming: the error arrives as an error event, which the SDK raises
        agent.llm.reset()
        with pytest.raises(openai.APIError, match="unreachable"):
            list(client(base).chat.completions.create(model=MODEL, messages=[image_message("q", image_array(11))],
                                                      stream=True))


def test_timeout_504():
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool(0.6, 0.6)])
    app = create_app(agent, ServeConfig(request_timeout=0.3))
    with running(app) as base:
        with pytest.raises(openai.InternalServerError) as info:
            client(base).chat.completions.create(model=MODEL, messages=[image_message("q", image_array(12))])
        assert info.value.status_code == 504 and info.value.body["code"] == "timeout"
        assert wait_for(lambda: app.state.mmreact.admission.running == 0)


def test_starting_503_then_ready():
    release = threading.Event()

    def build() -> Agent:
        release.wait(10)
        return Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()])

    with running(create_app(build), wait_ready=False) as base:
        assert httpx.get(f"{base}/health").json()["status"] == "starting"
        with pytest.raises(openai.InternalServerError) as info:
            client(base).chat.completions.create(model=MODEL, messages=[image_message("q", image_array(13))])
        assert info.value.status_code == 503 and info.value.response.headers.get("retry-after")
        release.set()
        assert wait_for(lambda: httpx.get(f"{base}/health").status_code == 200)
        img = image_array(13)
        assert client(base).chat.completions.create(model=MODEL, messages=[image_message("q", img)]) \
            .choices[0].message.content == sha(img)


def test_agent_that_fails_to_load_answers_503_with_the_reason():
    def build() -> Agent:
        raise ConfigError("Unknown LLM spec 'nope'.")

    with running(create_app(build), wait_ready=False) as base:
        assert wait_for(lambda: httpx.get(f"{base}/health").json()["status"] == "failed")
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL, "messages": []})
        assert r.status_code == 503 and "Unknown LLM spec" in r.json()["error"]["message"]


def test_serve_config_refuses_open_binding_without_key():
    with pytest.raises(ConfigError, match="without an API key"):
        ServeConfig(host="0.0.0.0")
    assert ServeConfig(host="0.0.0.0", api_keys=("k",)).host == "0.0.0.0"
    assert ServeConfig(host="0.0.0.0", insecure=True).insecure
    assert ServeConfig(host="::1").host == "::1"


def test_unknown_route_uses_openai_error_shape(hash_server):
    base, _ = hash_server
    r = httpx.get(f"{base}/v1/nothing")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_langchain_chat_openai_with_an_image_part(hash_server):
    lc = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage

    base, _ = hash_server
    img = image_array(14)
    model = lc.ChatOpenAI(model=MODEL, base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=30)
    reply = model.invoke([HumanMessage(content=[{"type": "text", "text": "hash?"},
                                                {"type": "image_url", "image_url": {"url": data_url(img)}}])])
    assert reply.content == sha(img)
    assert png_bytes(img)  # the same pixels the SDK test sends


def test_conversation_mapping_rules():
    from mmreact.serve._request import compose_question, parse_request

    def img(n: int) -> dict:
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{n}"}}

    body = {"model": MODEL, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [img(1)]},                       # an upload on its own ...
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}]},   # ... then its question
        {"role": "assistant", "content": "A cat."},
        {"role": "assistant", "content": None},                      # nothing to replay
        {"role": "user", "content": [{"type": "text", "text": "x" * 50}, img(2)]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hmm."}]},
        {"role": "user", "content": [img(3), {"type": "text", "text": "And  this\none?"}, img(1)]},
    ]}
    request = parse_request(body, model_name=MODEL, max_images=16)
    assert request.question == "And  this\none?"
    assert [(t.role, t.index) for t in request.history] == [("user", 0), ("assistant", 1), ("user", 2), ("assistant", 3)]
    assert [p.label for p in request.images] == ["messages[1].content[0]", "messages[5].content[1]",
                                                  "messages[7].content[0]", "messages[7].content[2]"]
    # handles as a fresh chat gives them: in order, identical pixels (image 1 twice) sharing one
    question = compose_question(request, ["image_1", "image_2", "image_3", "image_1"], turns=3, chars=20)
    assert question.splitlines() == [
        "Earlier in this conversation:", "Assistant: A cat.", f"User (image_2): {'x' * 17}...", "Assistant: Hmm.",
        "Now the user asks (image_3, image_1):", "And  this", "one?"]
    assert compose_question(request, ["image_1"] * 4, turns=0, chars=20) == request.question
    single = parse_request({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, model_name=MODEL,
                           max_images=16)
    assert compose_question(single, [], turns=8, chars=2000) == "hi"

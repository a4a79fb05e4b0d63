"""What clients of `mmreact serve` rely on, each checked on a real server on 127.0.0.1 (or, for remote
images, against the SSRF test's fakes): the key's scheme, /health's status code, the limits at their
exact values, Retry-After, max_queue=0, finish_reason "length", https's default port, non-200
replies and user names in image URLs, and the readable steps leaving out "prefetched" (issue 25)."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")

from mmreact import Agent, Image, ScriptedLLM, tool  # noqa: E402
from mmreact.llms import LLMRequest
from mmreact.cache import configure  # noqa: E402
from mmreact.errors import ConfigError, ImageError  # noqa: E402
from mmreact.serve import ServeConfig, create_app  # noqa: E402
from mmreact.serve._image_urls import ImageFetcher  # noqa: E402
from serve_helpers import (hash_planner, image_array, image_message, make_hash_tool, png_bytes,  # noqa: E402
                           running, sha, wait_for)
# the SSRF tests' fakes; ``ca`` and ``image_server`` are their fixtures (a test CA, an https server on 127.0.0.1)
from test_serve_ssrf import HOST, ca, client_ctx, fetcher, image_server, loopback_is_public  # noqa: E402,F401

MODEL = "mmreact"


def sdk(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)


def hash_agent(**tool_kw) -> Agent:
    return Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool(**tool_kw)])


def body_for(*arrays, text: str = "hash?") -> dict:
    return {"model": MODEL, "messages": [image_message(text, *arrays)]}


def post(base: str, body: Any, **kw: Any) -> httpx.Response:
    """POST a request body: a dict as JSON, bytes as they are, an iterator of bytes chunked."""
    if isinstance(body, dict):
        return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30, **kw)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(f"{base}/v1/chat/completions", content=body, timeout=30, headers=headers, **kw)


# -- the API key -----------------------------------------------------------------------------------
def test_a_valid_key_under_another_scheme_is_refused():
    with running(create_app(hash_agent(), ServeConfig(api_keys=("k-one",)))) as base:
        img = image_array(40)
        for header in ("Basic k-one", "Token k-one", "Bearerk-one", "k-one", "Bearer", "k-one Bearer"):
            for r in (httpx.get(f"{base}/v1/models", headers={"Authorization": header}),
                      post(base, body_for(img), headers={"Authorization": header})):
                assert r.status_code == 401, (header, r.status_code)
                assert r.json()["error"]["code"] == "invalid_api_key"
        for header in ("Bearer k-one", "bearer k-one"):  # the scheme is case-insensitive (RFC 7235)
            r = post(base, body_for(img), headers={"Authorization": header})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)


# -- /health ---------------------------------------------------------------------------------------
def test_health_answers_503_while_starting_failed_or_draining():
    release = threading.Event()

    def slow_build() -> Agent:
        assert release.wait(10)
        return hash_agent()

    app = create_app(slow_build)
    with running(app, wait_ready=False) as base:
        r = httpx.get(f"{base}/health")
        assert (r.status_code, r.json()["status"]) == (503, "starting")
        release.set()
        assert wait_for(lambda: httpx.get(f"{base}/health").json()["status"] == "ok")
        assert httpx.get(f"{base}/health").status_code == 200
        app.state.mmreact.start_draining()  # what the first SIGTERM does (mmreact.serve.server)
        r = httpx.get(f"{base}/health")
        assert (r.status_code, r.json()["status"]) == (503, "draining")

    def broken_build() -> Agent:
        raise ConfigError("Unknown LLM spec 'nope'.")

    with running(create_app(broken_build), wait_ready=False) as base:
        assert wait_for(lambda: httpx.get(f"{base}/health").json()["status"] == "failed")
        r = httpx.get(f"{base}/health")
        assert r.status_code == 503 and "Unknown LLM spec" in r.json()["error"]


# -- limits at their exact values -----------------------------------------------------------------------
def test_a_body_of_exactly_max_body_bytes_is_accepted():
    img = image_array(41)
    raw = json.dumps(body_for(img)).encode()
    limit = len(raw) + 10
    exact = raw + b" " * 10  # JSON allows trailing whitespace
    with running(create_app(hash_agent(), ServeConfig(max_body_bytes=limit))) as base:
        r = post(base, exact)  # with Content-Length
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)
        r = post(base, iter([exact[:1000], exact[1000:]]))  # chunked: counted while reading
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)
        assert post(base, exact + b" ").status_code == 413
        assert post(base, iter([exact[:1000], exact[1000:] + b" "])).status_code == 413


def test_exactly_max_images_are_accepted():
    imgs = [image_array(50 + i) for i in range(3)]
    with running(create_app(hash_agent(), ServeConfig(max_images=3))) as base:
        r = post(base, body_for(*imgs))
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(imgs[0])
        assert [i["handle"] for i in r.json()["mmreact"]["trace"]["images"]] == ["image_1", "image_2", "image_3"]
        r = post(base, body_for(*imgs, image_array(53)))
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_images"


# -- the queue -------------------------------------------------------------------------------------
def _fill(base: str, n: int, first_seed: int, results: list) -> list[threading.Thread]:
    threads = [threading.Thread(target=lambda i=i: results.append(post(base, body_for(image_array(first_seed + i)))))
               for i in range(n)]
    for t in threads:
        t.start()
    return threads


def test_retry_after_scales_with_the_queue_over_the_concurrency():
    gate = threading.Event()
    app = create_app(hash_agent(gate=gate), ServeConfig(max_concurrency=2, max_queue=4))
    results: list[httpx.Response] = []
    with running(app) as base:
        admission = app.state.mmreact.admission  # made when the server started
        threads = _fill(base, 6, 60, results)
        try:
            assert wait_for(lambda: admission.running == 2 and admission.queued == 4)
            r = post(base, body_for(image_array(70)))
            assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
            # the documented estimate: mean run time x (queued + 1) / slots, whole seconds, 1..60
            mean = admission._mean_seconds  # no run has finished: the starting estimate
            assert int(r.headers["retry-after"]) == min(60, max(1, math.ceil(mean * (4 + 1) / 2)))
        finally:
            gate.set()
            for t in threads:
                t.join(20)
    assert sorted(r.status_code for r in results) == [200] * 6


def test_max_queue_0_answers_on_an_idle_server_and_refuses_while_busy():
    gate = threading.Event()
    app = create_app(hash_agent(gate=gate), ServeConfig(max_concurrency=1, max_queue=0))
    results: list[httpx.Response] = []
    with running(app) as base:
        admission = app.state.mmreact.admission
        gate.set()
        img = image_array(80)
        r = post(base, body_for(img))
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)
        assert wait_for(lambda: admission.idle)  # the run's slot is released just after its answer
        gate.clear()
        threads = _fill(base, 1, 81, results)
        try:
            assert wait_for(lambda: admission.running == 1)
            r = post(base, body_for(image_array(82)))
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        finally:
            gate.set()
            for t in threads:
                t.join(20)
    assert [r.status_code for r in results] == [200]


# -- finish_reason -----------------------------------------------------------------------------------
def test_a_run_that_stops_at_max_steps_has_finish_reason_length():
    def never_answers(request: LLMRequest) -> str:
        return "Thought: once more.\nAction: image_hash(image_1)"

    agent = Agent(ScriptedLLM([never_answers], repeat_last=True), tools=[make_hash_tool()], max_steps=2)
    with running(create_app(agent)) as base:
        out = sdk(base).chat.completions.create(model=MODEL, messages=[image_message("hash?", image_array(90))])
        assert out.model_extra["mmreact"]["status"] == "max_steps"
        assert out.choices[0].finish_reason == "length"
        assert out.choices[0].message.content.startswith("No answer: ")
        chunks = list(sdk(base).chat.completions.create(model=MODEL, stream=True,
                                                        messages=[image_message("hash?", image_array(91))]))
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    answered = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()], max_steps=2)
    with running(create_app(answered)) as base:  # the same server answering in time: "stop"
        out = sdk(base).chat.completions.create(model=MODEL, messages=[image_message("hash?", image_array(92))])
        assert out.choices[0].finish_reason == "stop"


# -- remote images (the SSRF test's fakes: an injected resolver, a TLS server on 127.0.0.1) -------------
def test_an_https_url_without_a_port_connects_to_443(ca, image_server, monkeypatch):
    """Port 443 cannot be bound here: the connection the fetcher asks for (to the checked address,
    port 443) is recorded and handed to the test server's real port."""
    import httpcore

    img = image_array(100)
    image_server.routes["/a.png"] = (200, {"Content-Type": "image/png"}, png_bytes(img))
    asked: list[tuple[str, int]] = []
    real_connect = httpcore.SyncBackend.connect_tcp

    def connect_tcp(self, host, port, *args, **kwargs):
        asked.append((host, port))
        return real_connect(self, host, image_server.port if port == 443 else port, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    lookups: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["127.0.0.1"]

    f = ImageFetcher(resolver=resolve, address_problem=loopback_is_public, ssl_context=client_ctx(ca))
    assert f.fetch(f"https://{HOST}/a.png", "messages[0].content[1]") == png_bytes(img)
    assert lookups == [(HOST, 443)] and asked == [("127.0.0.1", 443)]
    assert image_server.requests == ["/a.png"]


@pytest.mark.parametrize("status", [201, 203, 204, 206])
def test_a_non_200_reply_is_not_used_as_an_image(ca, image_server, status):
    headers = {"Content-Range": "bytes 0-99/5000"} if status == 206 else {}
    image_server.routes["/a.png"] = (status, headers, b"" if status == 204 else png_bytes(image_array(101)))
    f = fetcher(ca, ["127.0.0.1"], address_problem=loopback_is_public)
    with pytest.raises(ImageError, match=f"answered HTTP {status}"):
        f.fetch(image_server.url("/a.png"), "x")
    assert image_server.requests == ["/a.png"]


@pytest.mark.parametrize("userinfo", ["user@", "user:@", ":pw@", "user:pw@"])
def test_a_url_with_a_user_name_is_refused_before_resolving(ca, image_server, userinfo):
    image_server.routes["/a.png"] = (200, {}, png_bytes(image_array(102)))
    calls: list[str] = []
    f = fetcher(ca, ["127.0.0.1"], calls, address_problem=loopback_is_public)
    with pytest.raises(ImageError, match="user name or password"):
        f.fetch(f"https://{userinfo}{HOST}:{image_server.port}/a.png", "x")
    assert calls == [] and image_server.connections == 0


# -- the readable steps ----------------------------------------------------------------------------------
@pytest.fixture
def fresh_cache():
    """An empty result cache: the prefetch job, not an earlier test, computes."""
    configure()
    yield
    configure()


def test_the_reasoning_text_leaves_out_prefetched_and_keeps_the_other_notes(fresh_cache):
    """Whether a call was prefetched depends on where the experts run (Ray Serve's remote experts are
    not prefetched), so the readable steps never say so; the trace does. A repeated call is still
    marked, in the text too."""
    ran = threading.Event()

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        ran.set()
        return f"{image.width}x{image.height} pixels, hash {image.sha256[:8]}"

    def after_the_prefetch(request: LLMRequest) -> str:
        assert ran.wait(10)  # the prefetch job has computed the result before the model asks
        return "Thought: look.\nAction: look(image_1)"

    # the server replays the script from its start for every request
    llm = ScriptedLLM([after_the_prefetch, "Thought: again.\nAction: look(image_1)", "Final Answer: seen"])
    img = image_array(110)
    with running(create_app(Agent(llm, tools=[look], prefetch="all"))) as base:
        out = sdk(base).chat.completions.create(model=MODEL, messages=[image_message("look?", img)])
        again = sdk(base).chat.completions.create(model=MODEL, messages=[image_message("look again?", img)])
    assert [c["reused"] for s in again.model_extra["mmreact"]["trace"]["steps"] for c in s["calls"]] == ["cache", "repeat"]
    assert "Observation from look(image_1) (cached):\n16x12 pixels" in again.choices[0].message.reasoning_content
    trace = out.model_extra["mmreact"]["trace"]
    assert [c["reused"] for s in trace["steps"] for c in s["calls"]] == ["prefetch", "repeat"]
    reasoning = out.choices[0].message.reasoning_content
    assert "prefetch" not in reasoning
    assert "Observation from look(image_1):\n16x12 pixels" in reasoning
    assert "Observation from look(image_1) (repeated call):\n16x12 pixels" in reasoning


# -- requests a client gets wrong (found by tools/mutation_check.py's newer bugs) ---------------------
def test_a_conversation_must_end_with_the_users_question_and_n_must_be_1():
    with running(create_app(hash_agent())) as base:
        img = image_array(120)
        ends_with_answer = {"model": MODEL, "messages": [image_message("hash?", img),
                                                         {"role": "assistant", "content": "abc"}]}
        r = post(base, ends_with_answer)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"] == "The last message must be a user message with the question."
        for n in (0, 2, -1, True, "1"):
            r = post(base, {**body_for(img), "n": n})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n", (n, r.text)
        r = post(base, {**body_for(img), "n": 1})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)


def test_a_declared_length_over_the_limit_is_refused_before_reading(ca, image_server):
    """A server that announces more bytes than the limit is refused from its header at once, not
    after the body has trickled in (or the time limit has run out)."""
    def trickle():
        yield b"\x89PNG" + b"0" * 96
        time.sleep(3)

    image_server.routes["/huge.png"] = (200, {"Content-Length": "5000"}, trickle)
    f = fetcher(ca, ["127.0.0.1"], address_problem=loopback_is_public, max_bytes=2000, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(ImageError, match="download limit"):
        f.fetch(image_server.url("/huge.png"), "x")
    assert time.monotonic() - t0 < 1.5


def test_a_data_url_is_measured_by_its_decoded_size():
    """``max_bytes`` is the decoded image's size: 300 bytes pass a 300-byte limit, 303 do not (the
    base64 text of 303 bytes is 404 characters)."""
    import base64

    from mmreact.serve._image_urls import decode_data_url

    exact = base64.b64encode(b"x" * 300).decode()
    assert decode_data_url(f"data:image/png;base64,{exact}", "p", 300)[0] == b"x" * 300
    over = base64.b64encode(b"x" * 303).decode()
    with pytest.raises(ImageError, match="over the .* limit for one image"):
        decode_data_url(f"data:image/png;base64,{over}", "p", 300)


@pytest.mark.parametrize("ready_before_serving", [False, True])
def test_ray_replicas_take_traffic_only_once_the_agent_is_loaded(ready_before_serving):
    """Ray Serve sends a replica requests once its app has started: the app Ray builds finishes
    loading the agent within its startup, so its first request is answered (the fresh-clone CI run
    saw 503 "starting" from Ray). ``mmreact serve`` keeps answering /health while it loads."""
    def slow_build() -> Agent:
        time.sleep(1.0)
        return hash_agent()

    app = create_app(slow_build, ready_before_serving=ready_before_serving)
    with running(app, wait_ready=False) as base:
        img = image_array(130)
        r = post(base, body_for(img))
        if ready_before_serving:
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)
        else:
            assert r.status_code == 503 and r.json()["error"]["code"] == "starting"


def test_the_ray_ingress_app_is_ready_when_its_startup_ends():
    """The app a Ray Serve ingress replica builds (its real ``__serve_build_asgi_app__``), with an
    agent that takes a second to build: the first request after startup is answered."""
    pytest.importorskip("ray")
    from mmreact.serve import ray_app

    ingress = ray_app.MMReactIngress({})

    def slow_build() -> Agent:
        time.sleep(1.0)
        return hash_agent()

    ingress.build_agent = slow_build  # type: ignore[method-assign]
    with running(ingress.__serve_build_asgi_app__(), wait_ready=False) as base:
        img = image_array(131)
        r = post(base, body_for(img))
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == sha(img)

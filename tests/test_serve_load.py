"""The server under load (no crosstalk, only 200/429, counters and threads back to baseline) and
client disconnects (the run stops, and so does the model's text)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")

from mmreact import Agent, Image, ScriptedLLM, tool  # noqa: E402
from mmreact.llms import LLM, Completion, LLMRequest
from mmreact.serve import ServeConfig, create_app  # noqa: E402
from serve_helpers import (hash_planner, image_array, image_message, make_hash_tool, running, sha,  # noqa: E402
                           unaccounted, wait_for)

REQUESTS, CLIENTS = 60, 12


def test_load_every_answer_is_its_own_image_and_nothing_leaks():
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool(0.05, 0.2)], max_steps=3)
    app = create_app(agent, ServeConfig(max_concurrency=4, max_queue=6))
    state = app.state.mmreact
    images = [image_array(1000 + i) for i in range(REQUESTS)]
    with running(app) as base:
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=60)
        sdk.chat.completions.create(model="mmreact", messages=[image_message("hash?", images[0])])  # warm-up
        assert wait_for(lambda: not any(t.name.startswith("mmreact-serve") for t in threading.enumerate()))
        baseline_threads = threading.active_count()

        def one(i: int) -> list[tuple[int, str | None, str | None]]:
            """Ask about image i; after a 429 wait a little and ask again (at most 50 tries)."""
            seen = []
            for _ in range(50):
                try:
                    out = sdk.chat.completions.create(model="mmreact", messages=[image_message("hash?", images[i])])
                    seen.append((200, out.choices[0].message.content, None))
                    break
                except openai.APIStatusError as exc:
                    seen.append((exc.status_code, None, exc.response.headers.get("retry-after")))
                    time.sleep(random.uniform(0.02, 0.1))
            return seen

        t0 = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            per_image = list(pool.map(one, range(REQUESTS)))
        elapsed = time.monotonic() - t0
        statuses = [s for seen in per_image for s, _, _ in seen]
        assert set(statuses) <= {200, 429}, statuses
        for i, seen in enumerate(per_image):
            assert seen[-1][0] == 200, f"request {i} never got through: {seen}"
            assert seen[-1][1] == sha(images[i]), f"request {i} got another image's answer"
            assert all(retry is not None and int(retry) >= 1 for status, _, retry in seen if status == 429)
        assert statuses.count(429) > 0  # 12 clients against 4 slots + 6 queue places
        assert wait_for(lambda: state.drained and not state.runs)
        assert wait_for(lambda: threading.active_count() == baseline_threads), \
            [t.name for t in threading.enumerate()]
        counts = state.admission.counts
        assert counts["completed"] == statuses.count(200) + 1
        assert counts["rejected"] == statuses.count(429)
        assert counts["admitted"] == counts["completed"]
        assert elapsed < 60


# -- disconnects ---------------------------------------------------------------------------------
@tool
def slow_look(image: Image, n: int) -> str:
    """Look at the image once more (slowly)."""
    time.sleep(0.25)
    return f"look {n}: nothing new"


def endless_planner(request: LLMRequest) -> str:
    step = sum(1 for m in request.messages if m.role == "assistant")
    return f"Thought: look again\nAction: slow_look(image_1, n={step})"


def test_stream_disconnect_stops_the_run():
    llm = ScriptedLLM([endless_planner], repeat_last=True)
    app = create_app(Agent(llm, tools=[slow_look], max_steps=30))
    state = app.state.mmreact
    with running(app) as base:
        body = {"model": "mmreact", "messages": [image_message("look", image_array(1))], "stream": True}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if '"step"' in line:  # the first finished step
                    break
        assert wait_for(lambda: state.admission.running == 0, timeout=5)
        assert len(llm.requests) <= 3, f"the run went on for {len(llm.requests)} steps after the client left"
        assert state.admission.counts["cancelled"] == 1


def test_non_streaming_disconnect_stops_the_run():
    llm = ScriptedLLM([endless_planner], repeat_last=True)
    app = create_app(Agent(llm, tools=[slow_look], max_steps=30))
    state = app.state.mmreact
    with running(app) as base:
        body = {"model": "mmreact", "messages": [image_message("look", image_array(2))]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/v1/chat/completions", json=body, timeout=httpx.Timeout(30, read=0.6))
        assert wait_for(lambda: state.admission.running == 0, timeout=5)
        assert len(llm.requests) <= 5
        assert state.admission.counts["cancelled"] == 1


class SlowTalker(LLM):
    """Streams a long reply one word every 10 ms (as a local model does), counting the words sent."""

    name = "slow-talker"

    def __init__(self) -> None:
        self.sent = 0
        self.finished = threading.Event()

    def complete(self, request: LLMRequest) -> Completion:
        words = ["Thought:"] + ["hmm"] * 300 + ["\nFinal Answer: done"]
        try:
            for w in words:
                time.sleep(0.01)
                if request.on_text is not None:
                    request.on_text(w + " ")
                self.sent += 1
        finally:
            self.finished.set()
        return Completion(text=" ".join(words))


def test_disconnect_stops_the_model_text_mid_step():
    llm = SlowTalker()
    app = create_app(Agent(llm, tools=[slow_look]))
    with running(app) as base:
        body = {"model": "mmreact", "messages": [image_message("talk", image_array(3))], "stream": True}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if "hmm" in line:
                    break
        assert llm.finished.wait(5)
        assert llm.sent < 200, f"the model wrote {llm.sent} of 302 pieces for a client that had left"
        assert wait_for(lambda: app.state.mmreact.admission.running == 0)


def test_a_client_that_leaves_while_queued_never_runs():
    gate = threading.Event()
    llm = ScriptedLLM([hash_planner], repeat_last=True)
    app = create_app(Agent(llm, tools=[make_hash_tool(gate=gate)]), ServeConfig(max_concurrency=1, max_queue=4))
    state = app.state.mmreact
    with running(app) as base:
        first = threading.Thread(target=lambda: httpx.post(
            f"{base}/v1/chat/completions", timeout=30,
            json={"model": "mmreact", "messages": [image_message("q", image_array(4))]}))
        first.start()
        try:
            assert wait_for(lambda: state.admission.running == 1)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{base}/v1/chat/completions", timeout=httpx.Timeout(30, read=0.3),
                           json={"model": "mmreact", "messages": [image_message("q", image_array(5))]})
            assert wait_for(lambda: state.admission.queued == 0)
        finally:
            gate.set()
            first.join(20)
        assert wait_for(lambda: state.drained)
        assert len(llm.requests) == 2  # the first run's two steps; the one that left never started
        assert state.admission.counts["admitted"] == 2 and state.admission.counts["completed"] == 1
        health = httpx.get(f"{base}/health").json()
        assert health["counters"]["left_queue"] == 1 and unaccounted(health) == 0, health


def test_a_request_whose_deadline_passes_in_the_queue_is_counted():
    gate = threading.Event()
    app = create_app(Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool(gate=gate)]),
                     ServeConfig(max_concurrency=1, max_queue=4, request_timeout=1.0))
    state = app.state.mmreact
    with running(app) as base:
        body = {"model": "mmreact", "messages": [image_message("q", image_array(6))]}
        first = threading.Thread(target=lambda: httpx.post(f"{base}/v1/chat/completions", timeout=30, json=body))
        first.start()
        try:
            assert wait_for(lambda: state.admission.running == 1)
            queued = httpx.post(f"{base}/v1/chat/completions", timeout=30,
                                json={**body, "messages": [image_message("q", image_array(7))]})
            assert queued.status_code == 504 and queued.json()["error"]["code"] == "timeout"
        finally:
            gate.set()
            first.join(20)
        assert wait_for(lambda: state.drained)
        health = httpx.get(f"{base}/health").json()
        assert health["counters"]["queue_timeout"] == 1 and unaccounted(health) == 0, health


def test_a_request_cancelled_while_queued_gives_its_place_back():
    """Ray Serve cancels the request of a client that left (no disconnect message reaches the app
    first): the queued wait must end with it, or it takes the next free slot and never gives it back."""
    import asyncio

    gate = threading.Event()
    app = create_app(Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool(gate=gate)]),
                     ServeConfig(max_concurrency=1, max_queue=4))
    state = app.state.mmreact

    async def scenario() -> dict:
        state.start_loading()  # what the lifespan does (httpx's ASGI transport runs none)
        while state.admission.status != "ready":
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mmreact", timeout=30) as client:
            def ask(seed: int):
                return client.post("/v1/chat/completions",
                                   json={"model": "mmreact", "messages": [image_message("q", image_array(seed))]})

            first = asyncio.create_task(ask(8))
            while state.admission.running != 1:
                await asyncio.sleep(0.01)
            queued = asyncio.create_task(ask(9))
            while state.admission.queued != 1:
                await asyncio.sleep(0.01)
            queued.cancel()  # as Ray Serve does: the request's task is cancelled
            with pytest.raises(asyncio.CancelledError):
                await queued
            gate.set()
            assert (await first).status_code == 200
            # the slot is free for the next request (it used to wait for it forever)
            assert (await asyncio.wait_for(ask(10), 20)).status_code == 200
            for _ in range(500):  # a run gives its slot back just after its answer is sent
                if state.admission.running == 0 and state.admission.queued == 0:
                    break
                await asyncio.sleep(0.01)
            return (await client.get("/health")).json()

    try:
        health = asyncio.run(scenario())
    finally:
        gate.set()
    assert health["running"] == 0 and health["queued"] == 0, health
    assert health["counters"]["left_queue"] == 1 and unaccounted(health) == 0, health

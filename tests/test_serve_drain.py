"""SIGTERM drains: an in-flight stream finishes, new requests get 503, then the process exits; past
the drain time the runs left are cancelled. And the `mmreact serve` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")

from serve_helpers import image_message, image_array, wait_for  # noqa: E402
from servers import free_port  # noqa: E402

APP = textwrap.dedent("""
    import sys, time
    from mmreact import Agent, Image, ScriptedLLM, tool
    from mmreact.llms import LLMRequest
    from mmreact.serve import ServeConfig, create_app, run_server

    @tool
    def slow_look(image: Image, n: int) -> str:
        '''Look at the image (slowly).'''
        time.sleep(0.4)
        return f"look {n}"

    def planner(request: LLMRequest) -> str:
        steps = sum(1 for m in request.messages if m.role == "assistant")
        if steps >= int(sys.argv[2]):
            return "Thought: enough\\nFinal Answer: looked"
        return f"Thought: again\\nAction: slow_look(image_1, n={steps})"

    config = ServeConfig(port=int(sys.argv[1]), drain_seconds=float(sys.argv[3]))
    agent = Agent(ScriptedLLM([planner], repeat_last=True), tools=[slow_look], max_steps=50)
    run_server(create_app(agent, config), config, log_level="warning")
""")


def start(steps: int, drain: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-c", APP, str(port), str(steps), str(drain)], stdout=log, stderr=log,
                            env={**os.environ})
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_for(ready, timeout=60, interval=0.1):
        proc.kill()
        log.seek(0)
        raise RuntimeError(f"server did not start: {log.read().decode(errors='replace')[-2000:]}")
    return proc, base


def stream_in_thread(base: str, seen_step: threading.Event) -> tuple[threading.Thread, list[str]]:
    lines: list[str] = []
    body = {"model": "mmreact", "messages": [image_message("look", image_array(1))], "stream": True}

    def read() -> None:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
                    if '"step"' in line:
                        seen_step.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, lines


def test_sigterm_lets_the_stream_finish_and_refuses_new_requests():
    proc, base = start(steps=4, drain=30)
    try:
        seen_step = threading.Event()
        thread, lines = stream_in_thread(base, seen_step)
        assert seen_step.wait(20)
        proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: httpx.get(f"{base}/health").json()["status"] == "draining", timeout=5)
        late = {"model": "mmreact", "messages": [image_message("q", image_array(2))]}
        r = httpx.post(f"{base}/v1/chat/completions", json=late)
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
        thread.join(30)
        assert lines[-1] == "[DONE]"
        answer = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in lines[:-1]
                         if json.loads(d).get("choices"))
        assert answer == "looked"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_runs_left_after_the_drain_time_are_cancelled():
    proc, base = start(steps=40, drain=0.5)
    try:
        seen_step = threading.Event()
        thread, lines = stream_in_thread(base, seen_step)
        assert seen_step.wait(20)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        thread.join(20)
        assert lines[-1] == "[DONE]"
        assert json.loads(lines[-2])["error"]["code"] == "cancelled"
        assert proc.wait(20) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True, timeout=60)


def test_cli_serve_refuses_an_open_binding_without_a_key():
    out = run_cli("serve", "--host", "0.0.0.0", "--llm", "scripted:/nonexistent.json")
    assert out.returncode == 2
    assert out.stderr.startswith("mmreact: error: Binding to 0.0.0.0 without an API key")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_cli_serve_bad_llm_spec_is_one_line():
    out = run_cli("serve", "--llm", "bogus:thing", "--port", str(free_port()))
    assert out.returncode == 2 and "Unknown LLM spec" in out.stderr and "Traceback" not in out.stderr

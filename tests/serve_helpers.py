"""Helpers for the server tests: a real uvicorn server on 127.0.0.1 in a thread, images as data
URLs, a planner (a ScriptedLLM reply function) and a tool that returns an image's content hash."""

from __future__ import annotations

import base64
import contextlib
import io
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np

from mmreact import Image, ScriptedLLM, load_image, tool
from mmreact.llms import Completion, LLMRequest
from servers import free_port

HASH_RE = re.compile(r"hash=([0-9a-f]{64})")


def image_array(seed: int, size: tuple[int, int] = (12, 16)) -> np.ndarray:
    """A small image with pixels of its own."""
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode("ascii")


def sha(array: np.ndarray) -> str:
    """The content hash mmreact gives these pixels (what the hash tool returns)."""
    return load_image(array).sha256


def image_message(text: str, *arrays: np.ndarray) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": data_url(a)}} for a in arrays]
    return {"role": "user", "content": parts}


def make_hash_tool(min_s: float = 0.0, max_s: float = 0.0, gate: threading.Event | None = None) -> Any:
    """A tool that sleeps ``min_s..max_s`` seconds (random) or until ``gate`` opens, then returns
    ``hash=<sha256 of the pixels>``."""

    @tool
    def image_hash(image: Image) -> str:
        """The content hash of an image."""
        if gate is not None:
            gate.wait(10)
        if max_s:
            time.sleep(random.uniform(min_s, max_s))
        return f"hash={image.sha256}"

    return image_hash


def hash_planner(request: LLMRequest) -> str:
    """Call ``image_hash`` on the image the current question is about, then answer its hash."""
    last = request.messages[-1]
    if last.role == "observation":
        found = HASH_RE.search(last.content)
        return f"Thought: I have the hash.\nFinal Answer: {found.group(1) if found else 'none'}"
    now = re.search(r"Now the user asks \(([^)]*)\)", last.content)
    handle = now.group(1).split(",")[0].strip() if now else re.search(r"image_\d+", last.content).group(0)
    return f"Thought: I need the hash.\nAction: image_hash({handle})"


class CountingLLM(ScriptedLLM):
    """A ScriptedLLM that reports token counts (words in the prompt and the reply), as real backends do."""

    def complete(self, request: LLMRequest) -> Completion:
        done = super().complete(request)
        prompt = sum(len(m.content.split()) for m in request.messages)
        return Completion(text=done.text, prompt_tokens=prompt, completion_tokens=len(done.text.split()))


@contextlib.contextmanager
def running(app: Any, *, wait_ready: bool = True, timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yield ``http://127.0.0.1:PORT``."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not thread.is_alive():
                raise RuntimeError("the test server stopped during startup")
            if server.started:
                if not wait_ready:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not become ready")
            time.sleep(0.02)
        yield base
    finally:
        server.should_exit = True
        thread.join(15)


#: How an admitted request can leave: the outcome of its run, or no run at all (see mmreact.serve._admission).
LEAVINGS = ("completed", "cancelled", "failed", "bad_request", "llm_error", "left_queue", "queue_timeout")


def unaccounted(health: dict[str, Any]) -> int:
    """Admitted requests that ``/health`` neither shows running or queued nor counts as gone (0 when it adds up)."""
    counts = health["counters"]
    return (counts.get("admitted", 0) - health["running"] - health["queued"]
            - sum(counts.get(k, 0) for k in LEAVINGS))


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds (bounded loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

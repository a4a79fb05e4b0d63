"""The memory of ``mmreact serve --llm scripted:FILE`` over many requests: does the server keep
anything per request?

    python tools/serve_memory.py [--requests 1500] [--warmup 300] [--image-kb 100]

Starts ``mmreact serve --llm scripted:FILE --tools ocr`` in a child process (the script answers at
once, as a fast remote model would; OCR is loaded but not called) and sends it ``--requests``
non-streamed requests one after another, each with a noise PNG of about ``--image-kb`` kB as a
base64 data URL (what a client sends; 16 different ones in turn, each decoded anew by the server). It prints the server's resident memory (``VmRSS`` from
``/proc``, so Linux only) after startup, after ``--warmup`` requests (allocator pools and caches
filled) and at the end, and how many requests were answered. A server that keeps each request (its
base64 body is the bulk) grows by about ``requests x image size`` between the last two figures.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import free_port  # noqa: E402 - tests/servers.py: stdlib only

SCRIPT = ["Thought: I can answer at once.\nFinal Answer: hi"]


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MB (10**6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for process {pid}")


def png_data_url(seed: int, kb: int) -> str:
    from PIL import Image as PILImage

    side = max(8, int((kb * 1000 / 3) ** 0.5))  # noise does not compress: about 3 bytes per pixel
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@contextmanager
def serve(extra: Sequence[str] = (), *, wait: float = 180.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """``mmreact serve --llm scripted:FILE --tools ocr [extra]`` on a free port; yields (process, base URL)."""
    import httpx

    folder = Path(tempfile.mkdtemp(prefix="mmreact-serve-memory-"))
    script = folder / "script.json"
    script.write_text(json.dumps(SCRIPT))
    port = free_port()
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mmreact", "serve", "--port", str(port), "--llm",
                             f"scripted:{script}", "--tools", "ocr", *extra], stdout=log, stderr=log, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mmreact serve exited: {(folder / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mmreact serve did not become ready: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc, base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def hammer(base: str, pid: int, *, requests: int, warmup: int, image_kb: int) -> dict[str, Any]:
    """Send ``requests`` requests one after another; the server's RSS at the start, after ``warmup``
    and at the end, and the status codes and answers seen."""
    import httpx

    statuses: Counter[int] = Counter()
    answers: Counter[str] = Counter()
    images = [png_data_url(seed, image_kb) for seed in range(16)]  # each request is parsed and decoded anew
    out: dict[str, Any] = {"rss_start": rss_mb(pid)}
    with httpx.Client(timeout=60) as client:
        for i in range(requests):
            body = {"model": "mmreact", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Say hi."}, {"type": "image_url", "image_url": {"url": images[i % 16]}}]}]}
            r = client.post(f"{base}/v1/chat/completions", json=body)
            statuses[r.status_code] += 1
            if r.status_code == 200:
                answers[r.json()["choices"][0]["message"]["content"]] += 1
            if i + 1 == warmup:
                out["rss_warm"] = rss_mb(pid)
        out["health"] = client.get(f"{base}/health").json()
    out.update(rss_end=rss_mb(pid), statuses=dict(statuses), answers=dict(answers), requests=requests,
               warmup=warmup, image_kb=image_kb)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--image-kb", type=int, default=100)
    args = parser.parse_args()
    with serve() as (proc, base):
        found = hammer(base, proc.pid, requests=args.requests, warmup=args.warmup, image_kb=args.image_kb)
    print(f"requests: {found['requests']} (one {found['image_kb']} kB PNG each), status codes {found['statuses']}, "
          f"answers {found['answers']}")
    print(f"server RSS: {found['rss_start']:.0f} MB after startup, {found['rss_warm']:.0f} MB after "
          f"{found['warmup']} requests, {found['rss_end']:.0f} MB after {found['requests']} "
          f"({found['rss_end'] - found['rss_warm']:+.1f} MB over the last {found['requests'] - found['warmup']})")


if __name__ == "__main__":
    main()

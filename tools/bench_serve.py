"""Throughput and latency of ``mmreact serve`` at 1, 4 and 12 concurrent clients, and the latency the
server adds per request over calling ``Agent.run`` directly, measured in the same run.

    python tools/bench_serve.py [--requests 200] [--clients 1,4,12] [--stream]

The agent is the same on both sides: a scripted LLM (one tool call, then the answer) and a cheap
tool (the image's mean brightness), so the figures measure the serving path (HTTP, JSON, base64 and
image validation, admission, the run thread, SSE) rather than a model. The server runs in a child
process with its default limits (4 runs at once, 16 queued), bound to 127.0.0.1; clients are
asyncio tasks in this process, each sending its requests one after another. The baseline is
``Agent.run`` on the same PNG file in this process, measured before and after the server levels
(the median of both is used), so a busy machine shifts both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import free_port  # noqa: E402 - tests/servers.py: stdlib only

from mmreact import Agent, Image, ScriptedLLM, tool  # noqa: E402
from mmreact.llms import LLMRequest

QUESTION = "How bright is this image?"


@tool
def brightness(image: Image) -> str:
    """Mean brightness of the image, 0..255."""
    return f"mean brightness {float(image.to_numpy().mean()):.1f}"


def planner(request: LLMRequest) -> str:
    if request.messages[-1].role == "observation":
        return "Thought: I have it.\nFinal Answer: " + request.messages[-1].content.split("brightness ")[-1].split()[0]
    return "Thought: measure it.\nAction: brightness(image_1)"


def make_agent() -> Agent:
    return Agent(ScriptedLLM([planner], repeat_last=True), tools=[brightness], max_steps=4)


def make_png(path: Path) -> bytes:
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_direct(path: Path, n: int) -> list[float]:
    agent = make_agent()
    for _ in range(10):
        agent.run(QUESTION, [str(path)])
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = agent.run(QUESTION, [str(path)])
        times.append(time.perf_counter() - t0)
        assert result.answer is not None, result.trace.pretty()
    return times


def child(port: int) -> None:
    from mmreact.serve import ServeConfig, create_app, run_server

    config = ServeConfig(port=port)
    run_server(create_app(make_agent(), config), config, log_level="warning")


def start_server() -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(port)], env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("bench_serve: the server did not start")


async def level(base: str, body: dict, clients: int, total: int, stream: bool) -> tuple[list[float], float, int]:
    """``total`` requests over ``clients`` concurrent clients; returns latencies, wall seconds, 429s."""
    import httpx

    latencies: list[float] = []
    refused = 0
    todo = iter(range(total))

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal refused
        for _ in todo:
            t0 = time.perf_counter()
            if stream:
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    async for _line in r.aiter_lines():
                        pass
                    status = r.status_code
            else:
                r = await http.post("/v1/chat/completions", json=body)
                status = r.status_code
            if status == 429:
                refused += 1
                continue
            if status != 200:
                raise SystemExit(f"bench_serve: HTTP {status}: {r.text[:300]}")
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        for _ in range(min(10, total)):  # warm-up: connections, server caches
            await http.post("/v1/chat/completions", json={**body, "stream": False})
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, wall, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--clients", default="1,4,12", help="concurrency levels")
    parser.add_argument("--stream", action="store_true", help="streamed responses (read to [DONE])")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    levels = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.png"
        png = make_png(path)
        body = {"model": "mmreact", "stream": args.stream, "messages": [{"role": "user", "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}]}]}
        n_direct = max(50, args.requests)
        before = bench_direct(path, n_direct)
        proc, base = start_server()
        try:
            rows = [(c, *asyncio.run(level(base, body, c, args.requests, args.stream))) for c in levels]
        finally:
            proc.terminate()
            proc.wait(30)
        after = bench_direct(path, n_direct)
    direct = before + after
    d50, d95 = pct(direct, 0.5), pct(direct, 0.95)
    print(f"image {len(png) / 1024:.1f} KB PNG ({len(body['messages'][0]['content'][1]['image_url']['url']) / 1024:.1f} KB "
          f"as a data URL); agent: scripted LLM, 2 steps, 1 cheap tool call; {os.cpu_count()} CPUs; "
          f"{'streamed' if args.stream else 'non-streamed'} responses")
    print(f"Agent.run directly (in-process, one at a time, {len(direct)} runs): p50 {d50 * 1000:.2f} ms, "
          f"p95 {d95 * 1000:.2f} ms, {1 / statistics.mean(direct):.0f} runs/s "
          f"(before the server levels p50 {pct(before, 0.5) * 1000:.2f} ms, after {pct(after, 0.5) * 1000:.2f} ms)")
    print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'429s':>5}")
    for clients, latencies, wall, refused in rows:
        print(f"{clients:>7} {len(latencies):>8} {len(latencies) / wall:>8.1f} {pct(latencies, 0.5) * 1000:>8.2f} "
              f"{pct(latencies, 0.95) * 1000:>8.2f} {refused:>5}")
    one = next((r for r in rows if r[0] == 1), None)
    if one is not None:
        s50 = pct(one[1], 0.5)
        print(f"server's added latency per request (p50 at 1 client - Agent.run p50): {(s50 - d50) * 1000:.2f} ms "
              f"({s50 / d50:.2f}x the direct call)")


if __name__ == "__main__":
    main()

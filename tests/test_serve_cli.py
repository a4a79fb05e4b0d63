"""`mmreact serve` started as a user starts it: a port that is taken, `--llm scripted:FILE` over many
requests (the script replayed per request and nothing kept: the server's memory measured with
tools/serve_memory.py), and `--max-body-mb` counted and printed in the same megabytes."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")
pytest.importorskip("easyocr_en_models")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("serve_memory", ROOT / "tools" / "serve_memory.py")
serve_memory = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(serve_memory)  # type: ignore[union-attr]


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Final Answer: hi"]))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "mmreact", "serve", "--port", str(port), "--llm",
                              f"scripted:{script}", "--tools", "ocr"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr == (f"mmreact: error: Port {port} is already in use on 127.0.0.1: stop what listens there, "
                          "or choose another with --port.\n")  # and nothing claimed that it serves


@pytest.fixture(scope="module")
def cli_server():
    with serve_memory.serve(["--max-body-mb", "1"]) as (proc, base):
        yield proc, base


def test_a_script_answers_every_request_and_nothing_is_kept(cli_server) -> None:
    """`--llm scripted:FILE` stands in for a fast remote model: each request replays the script from
    its start (it used to answer once and then 502 "ran out of replies"), and the server's memory stays
    flat over 1,500 requests with a 100 kB image each (it used to keep every request: 73 -> 473 MB)."""
    proc, base = cli_server
    found = serve_memory.hammer(base, proc.pid, requests=1500, warmup=300, image_kb=100)
    print(f"\nserver RSS: {found['rss_start']:.0f} MB at start, {found['rss_warm']:.0f} MB after 300 requests, "
          f"{found['rss_end']:.0f} MB after 1,500")
    assert found["statuses"] == {200: 1500} and found["answers"] == {"hi": 1500}
    assert found["rss_end"] - found["rss_warm"] < 40, found  # keeping 1,200 requests would be > 150 MB
    counters = found["health"]["counters"]
    assert counters["admitted"] == counters["completed"] == 1500


def test_body_limit_is_counted_and_printed_in_the_same_megabytes(cli_server) -> None:
    """`--max-body-mb 1` is 1,000,000 bytes and says "1 MB" (it was 1,048,576 bytes, "1.04858 MB")."""
    _, base = cli_server

    def body(size: int) -> bytes:
        head, tail = b'{"model": "mmreact", "messages": [{"role": "user", "content": "', b'"}]}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    at_limit = httpx.post(f"{base}/v1/chat/completions", content=body(1_000_000),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert at_limit.status_code == 400 and at_limit.json()["error"]["code"] == "question_too_long"  # read, not 413
    over = httpx.post(f"{base}/v1/chat/completions", content=body(1_000_001),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert over.status_code == 413
    assert over.json()["error"]["message"] == "The request body is 1,000,001 bytes; the limit is 1 MB."
    far = httpx.post(f"{base}/v1/chat/completions", content=body(2_345_678),
                     headers={"Content-Type": "application/json"}, timeout=30)
    assert far.json()["error"]["message"] == "The request body is 2.3 MB; the limit is 1 MB."

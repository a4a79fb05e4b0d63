"""Crash a child process part-way through writing a JSONL file (``kill -9``: no cleanup, no flush)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def kill_after_lines(proc: subprocess.Popen, path: Path, lines: int, timeout: float) -> list[str]:
    """SIGKILL ``proc`` once ``path`` holds ``lines`` lines (or after ``timeout`` seconds); returns the
    lines written by then."""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().count("\n") >= lines:
                break
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9
    return path.read_text().splitlines()

"""The report scripts the README quotes run to the end and pass on this code (small settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_reliability_report_passes():
    out = _script("tools/reliability_report.py", "--runs", "8", "--kills", "1", "--no-ocr")
    assert "all passed" in out and " BAD " not in out


def _script(*args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_bench_latency_prints_policy_none_and_ideal_from_the_same_rounds():
    out = _script("tools/bench_latency.py", "--only", "remote", "--steps", "0.5", "--repeats", "1")
    for scenario in ("remote-one", "remote-none", "remote-all"):
        line = next(x for x in out.splitlines() if x.startswith(scenario + " "))
        assert "none " in line and "auto " in line and "ideal " in line and "auto vs none" in line, line
        assert "% of the ideal" in line


@pytest.mark.slow
def test_bench_extra_bufts_measures_both_settings():
    out = _script("tools/bench_extra_bufts.py", "--repeats", "1", "--no-q4_0")
    from mmreact.llms import llama_cpu as native

    assert "mmreact's setting here" in out
    assert ("on: skipped, this CPU has AMX" in out) if native.has_amx() else ("off/on" in out)  # 'on' crashes on AMX

"""llama.cpp on every CPU: the extra-buffer-type rule, the exact load parameters users get, the
pre-decode crash check, the safe server launcher and ``mmreact doctor``.

The AMX crash only happens on a CPU with AMX, so these tests check the *parameters* on every
machine (with AMX simulated where the machine has none) and run real generations through the
exact load path ``Agent()`` uses, with extra buffer types both on and off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmreact import Agent
from mmreact.errors import NativeCrashError
from mmreact.llms import llama_cpu as native
from mmreact.llms.gguf import GGUFLLM, default_llm, default_model_path

pytest.importorskip("llama_cpp")
AMX_XEON = frozenset({"sse4_2", "avx", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"})
AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"})
RECEIPT = Path(__file__).resolve().parents[1] / "examples" / "receipt.png"


@pytest.mark.parametrize(("flags", "env", "enabled"), [
    (AMX_XEON, "", False),
    (AVX2_ONLY, "", True),
    (frozenset({"sse4_2"}), "", True),
    (frozenset(), "", True),  # nothing reported (macOS, Windows): llama.cpp's default
    (AVX2_ONLY, "0", False),
    (AMX_XEON, "1", True),
    (AMX_XEON, "off", False),
])
def test_extra_buffer_types_rule(flags, env, enabled):
    decision = native.extra_bufts(flags, env)
    assert decision.enabled is enabled
    if flags == AMX_XEON and not env:
        assert "amx_int8" in decision.reason and "segfault" in decision.reason


def test_the_load_path_sets_the_parameter_llama_cpp_receives(monkeypatch):
    """``native.llama`` is what ``Agent()``'s default and every ``gguf:`` model load through; the
    ctypes struct llama.cpp received must carry the decision (AMX simulated here)."""
    path = str(default_model_path())
    monkeypatch.setattr(native, "cpu_flags", lambda: AMX_XEON)
    monkeypatch.delenv(native.ENV, raising=False)
    off = native.llama(path, 256, 1)
    assert off.model_params.use_extra_bufts is False
    monkeypatch.setattr(native, "cpu_flags", lambda: AVX2_ONLY)
    on = native.llama(path, 256, 1)
    assert on.model_params.use_extra_bufts is True
    # The patch is gone after each load: a plain Llama gets llama.cpp's own default again.
    import llama_cpp.llama_cpp as lib  # the module Llama reads its defaults from

    assert lib.llama_model_default_params().use_extra_bufts is True
    assert native.load_kwargs(256, 1) == {"n_ctx": 256, "n_threads": 1, "n_threads_batch": native.batch_threads(1),
                                          "seed": 0, "verbose": False}


def test_thread_counts(monkeypatch):
    monkeypatch.setattr(native, "cores", lambda: 2)
    monkeypatch.delenv(native.THREADS_ENV, raising=False)
    assert native.decode_threads() == 1 and native.batch_threads(1) == 2
    monkeypatch.setattr(native, "cores", lambda: 32)
    assert native.decode_threads() == 8 and native.batch_threads(8) == 8
    monkeypatch.setattr(native, "cores", lambda: 1)
    assert native.decode_threads() == 1 and native.batch_threads(1) == 1
    monkeypatch.setenv(native.THREADS_ENV, "3")
    assert native.decode_threads() == 3 and native.batch_threads(3) == 3
    monkeypatch.setenv(native.THREADS_ENV, "zero")
    assert native.decode_threads() == 1


@pytest.mark.slow
def test_agent_default_loads_with_this_cpus_decision_and_answers():
    """The embedded default, exactly as ``Agent()`` builds it: its llama.cpp model carries this
    machine's decision (off on an AMX CI machine) and answers the receipt question."""
    agent = Agent()
    assert agent.llm is default_llm()
    params = agent.llm.llama.model_params
    assert params.use_extra_bufts is native.extra_bufts().enabled
    result = agent.run("What is the total on this receipt?", [RECEIPT])
    assert result.answer is not None and "7.75" in result.answer


@pytest.mark.parametrize("enabled", [False, True])
def test_real_generation_with_extra_buffer_types_off_and_on(monkeypatch, enabled):
    """Both settings decode through mmreact's GGUF backend (on an AMX machine only ``False`` is
    what users get; ``True`` is skipped there, since it is the crash)."""
    if enabled and native.has_amx():
        pytest.skip("extra buffer types crash llama.cpp on this AMX CPU (the bug this rule avoids)")
    monkeypatch.setenv(native.ENV, "1" if enabled else "0")
    llm = GGUFLLM(default_model_path(), n_ctx=512, n_threads=1)  # its own model, not the shared one
    assert llm.llama.model_params.use_extra_bufts is enabled
    from mmreact.llms.base import LLMRequest, Message

    done = llm.complete(LLMRequest(messages=(Message("user", "What is the capital of France?"),), max_tokens=8))
    assert done.text.strip() and done.completion_tokens


# -- the pre-decode check -------------------------------------------------------------------
CRASH = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]


def _counting(tmp_path: Path, body: str) -> list[str]:
    counter = tmp_path / "runs"
    return [sys.executable, "-c", f"open({str(counter)!r}, 'a').write('x'); {body}"]


def test_a_crashing_decode_becomes_one_sentence_and_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("MMREACT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(native.CHECK_ENV, raising=False)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    decision = native.ExtraBufts(True, "on (test)")
    command = _counting(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    for _ in range(2):
        with pytest.raises(NativeCrashError) as err:
            native.check_decode(model, decision, command=command)
        message = str(err.value)
        assert "SIGSEGV" in message and "m.gguf" in message and f"{native.ENV}=0" in message
        assert "\n" not in message
    assert (tmp_path / "runs").read_text() == "x"  # the child ran once; the crash was remembered
    saved = json.loads((tmp_path / "state" / "native-checks.json").read_text())
    assert [v["signal"] for v in saved.values()] == ["SIGSEGV"]


def test_a_good_check_runs_once_and_errors_are_not_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("MMREACT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(native.CHECK_ENV, raising=False)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    failing = _counting(tmp_path, "raise SystemExit(3)")
    native.check_decode(model, native.ExtraBufts(False, "t"), command=failing)  # not a crash: no error
    native.check_decode(model, native.ExtraBufts(False, "t"), command=failing)
    native._checked.clear()
    assert (tmp_path / "runs").read_text() == "x"  # in-process memory skips the second run
    native.check_decode(model, native.ExtraBufts(False, "t"), command=failing)
    assert (tmp_path / "runs").read_text() == "xx"  # an unclear failure is not remembered on disk
    ok = _counting(tmp_path, "print('fine')")
    native._checked.clear()
    native.check_decode(model, native.ExtraBufts(False, "t"), command=ok)
    native._checked.clear()
    native.check_decode(model, native.ExtraBufts(False, "t"), command=ok)
    assert (tmp_path / "runs").read_text() == "xxx"  # a good result is remembered on disk
    monkeypatch.setenv(native.CHECK_ENV, "0")
    native._checked.clear()
    native.check_decode(model, native.ExtraBufts(True, "t"), command=CRASH)  # opted out: never runs


def test_the_real_probe_decodes_with_the_shipped_model():
    decision = native.extra_bufts()
    outcome = native.run_probe(native.probe_command(default_model_path(), decision))
    assert outcome["ok"], outcome
    assert json.loads(outcome["detail"])["text"].strip()


# -- doctor and the server launcher ------------------------------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def test_doctor_reports_cpu_llama_cpp_and_backends():
    done = subprocess.run([sys.executable, "-m", "mmreact.cli", "doctor", "--json"], capture_output=True,
                          text=True, timeout=180, env=_env())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["native"]["llama_cpp_system_info"].startswith("CPU")
    assert report["native"]["extra_buffer_types"]["enabled"] is native.extra_bufts().enabled
    assert report["default_llm"]["ok"] is True
    assert {r["tool"] for r in report["tools"]} >= {"ocr", "caption", "detect"}
    text = subprocess.run([sys.executable, "-m", "mmreact.cli", "doctor"], capture_output=True, text=True,
                          timeout=180, env=_env())
    assert "llama.cpp extra buffer types:" in text.stdout and "embedded LLM" in text.stdout


def test_llama_server_launcher_applies_the_decision(monkeypatch):
    """``python -m mmreact.llms.llama_server`` sets llama.cpp's defaults before the server loads."""
    code = ("import sys, llama_cpp.server.__main__ as m\n"
            "import llama_cpp.llama_cpp as lib\n"
            "m.main = lambda: print(lib.llama_model_default_params().use_extra_bufts)\n"
            "from mmreact.llms import llama_server\nllama_server.main()\n")
    for env, expected in (("0", "False"), ("1", "True")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**_env(), native.ENV: env})
        assert done.stdout.strip() == expected, done.stderr

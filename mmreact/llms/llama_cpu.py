"""llama.cpp on the CPU it runs on: which of its features mmreact turns off, and why.

llama.cpp can move a model's weights into *extra buffer types* when it loads them: CPU-specific
layouts that its fast kernels read (``REPACK`` on x86 AVX2/AVX-512 and Arm, ``AMX`` on Intel CPUs
with Advanced Matrix Extensions). On Intel Xeons with AMX (``lscpu`` lists ``amx_int8``),
llama-cpp-python 0.3.36 built from source repacks SmolLM2's Q4_1 weights into the AMX buffer type
and then segfaults in ``llama_decode`` at the first token: the user's first minute is a crash.

Decision (every ``gguf:`` model and the embedded default load through :func:`load_params`):

* **On a CPU with AMX, extra buffer types are off** (``llama_model_params.use_extra_bufts =
  False``). The model then runs llama.cpp's plain CPU kernels, which answer correctly there.
* **Elsewhere they stay on** (llama.cpp's own default): the REPACK layouts are what llama.cpp
  ships and tests on AVX2/AVX-512/Arm, mmreact's suite runs with them on AVX-512, and they are
  measurably faster for the quantisations they cover (``python tools/bench_llm.py --extra-bufts``
  prints the figures for this machine; the README quotes one run).
* ``MMREACT_LLAMA_EXTRA_BUFTS=0`` or ``=1`` overrides the choice either way (for a CPU whose
  crash this rule does not know yet, or to measure).

:func:`report` gathers what a bug report about a native crash needs (CPU model and flags,
llama.cpp's build and system info, the chosen parameters); ``mmreact doctor`` prints it.

**A crash becomes a sentence.** Before a GGUF model first decodes in a process, :func:`check_decode`
decodes a few tokens with the same file and the same load parameters in a child process, once
per machine, llama.cpp build, model file and settings (remembered in
``native-checks.json`` in :func:`state_dir`; about half a second the first time). If the child
dies from a signal (a segfault in llama.cpp), mmreact raises :class:`~mmreact.errors.NativeCrashError`
naming the CPU, the setting and what to try, instead of dying itself. ``MMREACT_NATIVE_CHECK=0``
skips the check.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._hashing import digest

ENV = "MMREACT_LLAMA_EXTRA_BUFTS"
#: CPU flags (as Linux's /proc/cpuinfo names them) worth showing in a crash report.
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: /proc/cpuinfo; elsewhere what the platform reports, maybe none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_amx(flags: frozenset[str] | None = None) -> bool:
    return any(f.startswith("amx") for f in (cpu_flags() if flags is None else flags))


@dataclass(frozen=True, slots=True)
class ExtraBufts:
    """Whether llama.cpp may use its extra buffer types here, and the reason in one sentence."""

    enabled: bool
    reason: str


def extra_bufts(flags: frozenset[str] | None = None, env: str | None = None) -> ExtraBufts:
    """The decision for this machine (see the module docstring)."""
    value = (os.environ.get(ENV) if env is None else env) or ""
    if value.strip().lower() in ("0", "false", "no", "off"):
        return ExtraBufts(False, f"turned off by {ENV}={value}")
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return ExtraBufts(True, f"turned on by {ENV}={value}")
    flags = cpu_flags() if flags is None else flags
    if has_amx(flags):
        amx = ", ".join(sorted(f for f in flags if f.startswith("amx")))
        return ExtraBufts(False, f"off: this CPU has AMX ({amx}), where llama.cpp's AMX weight repacking "
                                 "crashes (segfault in llama_decode)")
    return ExtraBufts(True, "on (llama.cpp's default): no AMX on this CPU")


#: ``Llama(...)`` builds its ``llama_model_params`` inside ``__init__`` and offers no argument for
#: ``use_extra_bufts``; :func:`model_params` patches the default-params function for the duration
#: of one load (loads are serialised by this lock and by mmreact's model-loading lock).
_patch_lock = threading.Lock()


def set_default_extra_bufts(use_extra_bufts: bool) -> Callable[[], None]:
    """Make every ``llama_cpp.Llama(...)`` load from now on use ``use_extra_bufts``; returns the undo."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def patched() -> Any:
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    lib.llama_model_default_params = patched

    def undo() -> None:
        lib.llama_model_default_params = original

    return undo


@contextlib.contextmanager
def model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Inside this block, ``llama_cpp.Llama(...)`` loads with ``use_extra_bufts`` set as given."""
    with _patch_lock:
        undo = set_default_extra_bufts(use_extra_bufts)
        try:
            yield
        finally:
            undo()


THREADS_ENV = "MMREACT_LLAMA_THREADS"


def cores() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def decode_threads() -> int:
    """Threads for generating tokens: ``MMREACT_LLAMA_THREADS``, else half the cores (at least 1,
    at most 8), llama-cpp-python's own default.

    Measured on a 2-core machine with SmolLM2-135M (``python tools/bench_threads.py``): two
    threads decode fastest when nothing else runs (about 120 against 75 tokens/s), but with one
    other busy process they fall to 17-27 tokens/s (OpenMP's waiting threads spin against it),
    while one thread keeps about 78. An agent runs experts beside its LLM (prefetch, other chats),
    so the robust setting is the default."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(cores() // 2, 8))


def batch_threads(n_threads: int) -> int:
    """Threads for reading a prompt: every core (at most 8), never fewer than ``n_threads``; prompt
    batches hold enough work per step that contention costs little (measured as above)."""
    return max(n_threads, min(cores(), 8))


def load_kwargs(n_ctx: int, n_threads: int, seed: int = 0) -> dict[str, Any]:
    """The ``llama_cpp.Llama`` keyword arguments mmreact loads every GGUF model with."""
    return dict(n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=batch_threads(n_threads), seed=seed,
                verbose=False)


def llama(path: str, n_ctx: int, n_threads: int, *, decision: ExtraBufts | None = None) -> Any:
    """Load ``path`` with llama-cpp-python the way every mmreact GGUF backend does."""
    from llama_cpp import Llama

    decision = decision or extra_bufts()
    with model_params(decision.enabled):
        return Llama(model_path=path, **load_kwargs(n_ctx, n_threads))


def system_info() -> str:
    """llama.cpp's own report of the features it was built with (``llama_print_system_info``)."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python is not installed"
    raw = llama_cpp.llama_print_system_info()
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()


def report() -> dict[str, Any]:
    """What a report about a native crash needs (printed by ``mmreact doctor``)."""
    flags = cpu_flags()
    try:
        import llama_cpp

        version = getattr(llama_cpp, "__version__", "?")
    except ImportError:
        version = None
    decision = extra_bufts()
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in flags],
        "llama_cpp_python": version,
        "llama_cpp_system_info": system_info() if version else None,
        "extra_buffer_types": {"enabled": decision.enabled, "reason": decision.reason},
    }


# -- the pre-decode check ------------------------------------------------------------------------
CHECK_ENV = "MMREACT_NATIVE_CHECK"
_checked: set[str] = set()
_check_lock = threading.Lock()


def state_dir() -> Path:
    """mmreact's per-user state folder: ``MMREACT_STATE_DIR``, else ``$XDG_CACHE_HOME/mmreact``
    (default ``~/.cache/mmreact``)."""
    explicit = os.environ.get("MMREACT_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmreact"


def _check_key(path: Path, decision: ExtraBufts) -> str:
    stat = path.stat()
    parts = [sys.version, str(path), str(stat.st_size), str(stat.st_mtime_ns), str(decision.enabled),
             _llama_version(), system_info(), ",".join(sorted(cpu_flags()))]
    return digest("\n".join(parts), 32)


def _llama_version() -> str:
    try:
        import llama_cpp

        return str(getattr(llama_cpp, "__version__", "?"))
    except ImportError:
        return "none"


def _read_checks() -> dict[str, Any]:
    try:
        data = json.loads((state_dir() / "native-checks.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(key: str, outcome: dict[str, Any]) -> None:
    folder = state_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = _read_checks()
        data[key] = outcome
        tmp = folder / f".native-checks.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, folder / "native-checks.json")
    except OSError:
        pass  # best effort: the check then simply runs again next time


def probe_command(path: Path, decision: ExtraBufts) -> list[str]:
    """The child process that loads ``path`` like mmreact does and decodes a few tokens."""
    return [sys.executable, "-m", "mmreact.llms.llama_cpu", str(path), "1" if decision.enabled else "0"]


def run_probe(command: list[str], timeout: float = 120.0) -> dict[str, Any]:
    """Run a probe child; ``{"ok": bool, "signal": name | None, "detail": str}``."""
    env = {**os.environ, CHECK_ENV: "0"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "signal": None, "detail": f"timed out after {timeout:g} s"}
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return {"ok": False, "signal": name, "detail": done.stderr.strip()[-300:]}
    if done.returncode != 0:
        return {"ok": False, "signal": None, "detail": " ".join(done.stderr.split())[-300:]}
    return {"ok": True, "signal": None, "detail": done.stdout.strip()[-300:]}


def crash_message(path: Path, decision: ExtraBufts, outcome: dict[str, Any]) -> str:
    flags = ", ".join(f for f in INTERESTING_FLAGS if f in cpu_flags()) or "unknown"
    other = "0" if decision.enabled else "1"
    return (f"llama.cpp crashed ({outcome['signal']}) decoding {path.name} on this CPU ({cpu_model()}; "
            f"flags: {flags}; extra buffer types {decision.reason}), so mmreact did not run it: try "
            f"{ENV}={other}, or run `mmreact doctor` and report what it prints.")


def check_decode(path: Path, decision: ExtraBufts | None = None, *, command: list[str] | None = None) -> None:
    """Make sure llama.cpp can decode with ``path`` here before this process does (see the module
    docstring); raises :class:`~mmreact.errors.NativeCrashError` when the child crashed."""
    from ..errors import NativeCrashError

    if os.environ.get(CHECK_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return
    decision = decision or extra_bufts()
    key = _check_key(path, decision)
    with _check_lock:
        if key in _checked:
            return
        known = _read_checks().get(key)
        outcome = known if isinstance(known, dict) and "ok" in known else None
        if outcome is None:
            outcome = run_probe(command or probe_command(path, decision))
            if outcome["ok"] or outcome["signal"]:  # only definite answers are remembered
                _remember(key, outcome)
        if outcome.get("signal"):
            raise NativeCrashError(crash_message(path, decision, outcome))
        _checked.add(key)


def _probe_main(argv: list[str]) -> None:
    """Child side of :func:`check_decode`: load like mmreact and decode four tokens greedily."""
    path, enabled = argv[0], argv[1] == "1"
    model = llama(path, 512, 1, decision=ExtraBufts(enabled, "probe"))
    out = model.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
    print(json.dumps({"text": out["choices"][0]["text"]}))


if __name__ == "__main__":
    _probe_main(sys.argv[1:])

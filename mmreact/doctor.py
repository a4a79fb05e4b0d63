"""``mmreact doctor``: what this machine offers mmreact, and whether each part runs.

It prints what a bug report needs: mmreact's and Python's versions, the CPU and its flags,
llama.cpp's build (``llama_print_system_info``) and the settings mmreact chose for it, torch and
transformers, whether the embedded LLM decodes (checked in a child process, so a native crash is
reported as a line instead of killing the report), and each tool's state in the words of ``mmreact
tools``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
import time
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch() -> dict[str, Any]:
    if importlib.util.find_spec("torch") is None:
        return {"installed": False}
    import torch

    cuda = bool(torch.cuda.is_available())
    return {"installed": True, "version": torch.__version__, "cuda": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None, "threads": torch.get_num_threads()}


def _default_llm() -> dict[str, Any]:
    from .errors import MMReactError
    from .llms import llama_cpu as native
    from .llms.gguf import default_model_path

    try:
        path = default_model_path()
    except MMReactError as exc:
        return {"ok": False, "detail": str(exc)}
    if importlib.util.find_spec("llama_cpp") is None:
        return {"ok": False, "detail": "llama-cpp-python is not installed: run `pip install llama-cpp-python`."}
    decision = native.extra_bufts()
    t0 = time.perf_counter()
    outcome = native.run_probe(native.probe_command(path, decision))
    outcome["seconds"] = round(time.perf_counter() - t0, 2)
    outcome["model"] = path.name
    if outcome.get("signal"):
        outcome["detail"] = native.crash_message(path, decision, outcome)
    return outcome


def _tools() -> list[dict[str, Any]]:
    """Each tool's state as ``mmreact tools`` words it (the same check, so the two always agree:
    weights that would download on first use are "not downloaded", not "ready")."""
    from .tools.status import status_word, tool_rows

    return [{"tool": r["name"], "ready": r["status"] == "ready", "status": status_word(r), "detail": r["missing"]}
            for r in tool_rows(sizes=False)]


def gather() -> dict[str, Any]:
    from . import __version__
    from .llms import llama_cpu as native

    return {
        "mmreact": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "native": native.report(),
        "torch": _torch(),
        "transformers": _version("transformers"),
        "default_llm": _default_llm(),
        "tools": _tools(),
    }


def lines(report: dict[str, Any]) -> list[str]:
    """The report as short lines of plain text."""
    n = report["native"]
    out = [
        f"mmreact {report['mmreact']} on Python {report['python']} ({report['platform']})",
        f"CPU: {n['cpu']}; flags: {' '.join(n['cpu_flags']) or 'none reported'}",
    ]
    if n["llama_cpp_python"]:
        out.append(f"llama-cpp-python {n['llama_cpp_python']}; llama.cpp built with: {n['llama_cpp_system_info']}")
        out.append(f"llama.cpp extra buffer types: {n['extra_buffer_types']['reason']}")
    else:
        out.append("llama-cpp-python: not installed")
    t = report["torch"]
    if t["installed"]:
        gpu = f"CUDA: {t['gpu']}" if t["cuda"] else "CUDA: no GPU"
        out.append(f"torch {t['version']} ({gpu}; {t['threads']} CPU threads); transformers {report['transformers']}")
    else:
        out.append("torch: not installed")
    d = report["default_llm"]
    if d.get("ok"):
        out.append(f"embedded LLM ({d['model']}): decodes (checked in a child process, {d['seconds']} s)")
    else:
        out.append(f"embedded LLM: FAILS: {d.get('detail') or d.get('signal')}")
    for row in report["tools"]:
        out.append(f"tool {row['tool']}: " + ("ready" if row["ready"] else f"{row['status']}: {row['detail'] or 'no details'}"))
    return out

"""What ``mmreact tools`` shows: every tool, whether it can run here, and how to get its weights.

The table has one short line per tool (name, status, the first line of its description cut to the
terminal's width); the full sentences about missing weights follow below it, and ``--verbose``
shows everything per tool. Status words: ``ready``; ``not downloaded (990 MB)`` (missing, and the
size the server reports; it downloads on first use unless ``MMREACT_ALLOW_DOWNLOAD=0``);
``offline`` (missing, and no network or an offline switch); ``unavailable`` (no download helps:
a missing package or a wrong path).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..weights import Status, human_size

#: seconds the size lookups may take, all together, before the table is printed without the sizes
#: still missing (each lookup runs in a daemon thread that is abandoned then: the process does not
#: wait for a hub that never answers)
SIZE_TIMEOUT = 8.0


def _status(tool: Any) -> tuple[Status, Any]:
    try:
        status = tool.weights_status()
        return status, (tool.weights() if status.state in ("download", "manual") else None)
    except Exception as exc:  # noqa: BLE001 - a broken check is itself a status
        return Status("unavailable", message=f"check failed: {exc}"), None


def _size(source: Any) -> int | None:
    try:
        return source.plan().fetch_bytes
    except Exception:  # noqa: BLE001 - the size is a nicety; the status line stands without it
        return None


def lookup_sizes(sources: list[Any], timeout: float) -> list[int | None]:
    """Each source's download size, asked all at once; None for a lookup that failed or is still
    running after ``timeout`` seconds in all (never waited for past that)."""
    found: list[int | None] = [None] * len(sources)
    threads = []
    for i, source in enumerate(sources):
        def look(i: int = i, source: Any = source) -> None:
            found[i] = _size(source)

        thread = threading.Thread(target=look, name="mmreact-size", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [found[i] if not t.is_alive() else None for i, t in enumerate(threads)]


def tool_rows(*, sizes: bool = True) -> list[dict[str, Any]]:
    """One JSON-able row per discovered tool (built-ins and plug-ins)."""
    from .registry import discover

    rows, sources = [], []
    for name, info in discover().items():
        status, source = _status(info.tool)
        rows.append({
            "name": name, "origin": info.origin, "ready": status.offered, "status": status.state,
            "weights": status.path, "download_bytes": None,
            "missing": status.message if status.state != "ready" else None,
            "usage": info.tool.usage(), "description": info.tool.description,
        })
        sources.append(source)
    wanted = [(row, src) for row, src in zip(rows, sources) if src is not None]
    if sizes and wanted:
        for row, size in zip((r for r, _ in wanted), lookup_sizes([src for _, src in wanted], SIZE_TIMEOUT)):
            row["download_bytes"] = size
    return rows


def status_word(row: dict[str, Any]) -> str:
    state = row["status"]
    if state in ("download", "manual"):
        size = row.get("download_bytes")
        return f"not downloaded ({human_size(size)})" if size is not None else "not downloaded"
    return str(state)


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    import textwrap

    lines: list[str] = []
    for para in text.splitlines() or [""]:
        lines += textwrap.wrap(para, width=max(20, width), initial_indent=indent, subsequent_indent=indent + "  ",
                               break_on_hyphens=False) or [indent]
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render_lines(rows: list[dict[str, Any]], failures: list[dict[str, str]], *, width: int = 80,
                 verbose: bool = False) -> list[str]:
    """The text ``mmreact tools`` prints, no line longer than ``width`` (but for one long word)."""
    out: list[str] = []
    if verbose:
        for r in rows:
            out += _wrap(f"{r['name']}  ({r['origin']})  {status_word(r)}", width)
            out += _wrap(f"usage: {r['usage']}", width, "  ")
            out += _wrap(r["description"] or "", width, "  ")
            out += _wrap(f"weights: {r['weights']}" if r["weights"] else (r["missing"] or "no weights"), width, "  ")
    else:
        words = [status_word(r) for r in rows]
        name_w = max([4, *(len(r["name"]) for r in rows)])
        status_w = max([6, *(len(w) for w in words)])
        desc_w = max(10, width - name_w - status_w - 4)
        out.append(f"{'tool':<{name_w}}  {'status':<{status_w}}  description".rstrip())
        for r, word in zip(rows, words):
            first = (r["description"] or "").splitlines()[0] if r["description"] else ""
            out.append(f"{r['name']:<{name_w}}  {word:<{status_w}}  {_cut(first, desc_w)}".rstrip())
        notes = [r for r in rows if r["missing"]]
        if notes:
            out.append("")
        for r in notes:
            out += _wrap(f"{r['name']}: {r['missing']}", width)
    for f in failures:
        out += _wrap(f"plug-in failed to load and was skipped: {f['entry_point']} ({f['distribution']}): "
                     f"{f['error']}", width)
    return out


def render(rows: list[dict[str, Any]], failures: list[dict[str, str]], *, verbose: bool = False) -> None:
    """Print :func:`render_lines` at the terminal's width (``COLUMNS`` when set; 80 when not a terminal)."""
    import shutil

    width = shutil.get_terminal_size((80, 24)).columns
    print("\n".join(render_lines(rows, failures, width=width, verbose=verbose)))

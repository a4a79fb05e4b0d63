"""Where tools come from: built-in experts and third-party plug-ins.

Plug-ins register through the entry-point group ``mmreact.tools``. The object an entry point
names may be a :class:`~mmreact.tools.Tool` instance, a Tool subclass, a decorated or plain
function, or a list/tuple of those. A plug-in that fails to load is reported (see
:func:`plugin_failures`) and skipped; the rest keep working.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .._lazy import import_target
from .._plugins import Failure
from ..errors import MMReactError, ToolNotFoundError, one_line
from . import Tool, as_tool

log = logging.getLogger("mmreact")
log.addHandler(logging.NullHandler())  # the application decides where warnings go
ENTRY_POINT_GROUP = "mmreact.tools"

#: Built-in experts, imported lazily ("module:attribute"); their modules import nothing heavy.
BUILTIN_TOOLS: dict[str, str] = {
    "caption": "mmreact.experts.caption:CaptionTool",
    "dense_caption": "mmreact.experts.dense:DenseCaptionTool",
    "tags": "mmreact.experts.tags:TagsTool",
    "detect": "mmreact.experts.detect:DetectTool",
    "ocr": "mmreact.experts.ocr:OCRTool",
}


#: A plug-in entry point that could not be loaded (the same record as the LLM and system registries').
PluginFailure = Failure


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A discovered tool and where it came from."""

    tool: Tool
    origin: str  # "builtin" or "plugin:<distribution>"


_lock = threading.Lock()
_discovered: dict[str, ToolInfo] | None = None
_failures: list[PluginFailure] = []


def _tools_from(obj: Any) -> list[Tool]:
    if isinstance(obj, (list, tuple)):
        return [as_tool(o) for o in obj]
    return [as_tool(obj)]


def _discover() -> tuple[dict[str, ToolInfo], list[PluginFailure]]:
    found: dict[str, ToolInfo] = {}
    failures: list[PluginFailure] = []
    for name, target in BUILTIN_TOOLS.items():
        try:
            found[name] = ToolInfo(as_tool(import_target(target)), "builtin")
        except Exception as exc:  # a broken built-in must not take the others down
            failures.append(PluginFailure(name, "mmreact", one_line(exc)))
            log.warning("built-in tool %s failed to load: %s", name, one_line(exc))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        try:
            tools = _tools_from(ep.load())
        except Exception as exc:  # noqa: BLE001 - any plug-in error is reported, not raised
            failures.append(PluginFailure(f"{ep.name} = {ep.value}", dist, one_line(exc)))
            log.warning("plug-in %s (%s) failed to load and was skipped: %s", ep.name, dist, one_line(exc))
            continue
        for t in tools:
            if t.name in found:
                failures.append(
                    PluginFailure(f"{ep.name} = {ep.value}", dist, f"tool name '{t.name}' is already taken")
                )
                continue
            found[t.name] = ToolInfo(t, f"plugin:{dist}")
    return found, failures


def discover(refresh: bool = False) -> dict[str, ToolInfo]:
    """Every tool available in this process (built-ins and plug-ins), loaded once and shared."""
    global _discovered, _failures
    with _lock:
        if _discovered is None or refresh:
            _discovered, _failures = _discover()
        return dict(_discovered)


def plugin_failures() -> list[PluginFailure]:
    """Plug-ins (and built-ins) that failed to load in the last discovery."""
    discover()
    return list(_failures)


def resolve_tools(spec: Iterable[str | Tool | Any] | None = None, *, ready_only: bool = False) -> list[Tool]:
    """Turn a mix of tool names, Tool objects and functions into Tool objects.

    ``None`` means every discovered tool (only those that can run here when ``ready_only``).
    Unknown names raise :class:`ToolNotFoundError` naming what is available.
    """
    if spec is None:
        tools = [info.tool for info in discover().values()]
        return [t for t in tools if t.check() is None] if ready_only else tools
    available: dict[str, ToolInfo] | None = None
    out: list[Tool] = []
    for item in spec:
        if isinstance(item, str):
            name = item.strip()
            if not name:
                continue
            if available is None:
                available = discover()
            if name not in available:
                raise ToolNotFoundError(
                    f"Unknown tool '{name}'; available tools: {', '.join(sorted(available)) or 'none'}."
                )
            out.append(available[name].tool)
        else:
            out.append(as_tool(item))
    names = [t.name for t in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MMReactError(f"Two tools share the name {dupes[0]!r}; tool names must be unique.")
    return out


def parse_tool_list(text: str | None) -> Sequence[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; ``None``/empty -> ``None`` (all)."""
    if text is None or not text.strip():
        return None
    return [t.strip() for t in text.split(",") if t.strip()]

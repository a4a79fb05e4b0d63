"""Plug-ins by entry point, with the built-ins registered the same way (simonw/llm's pattern).

Three groups: ``mmreact.tools`` (tools), ``mmreact.llms`` (LLM backends: the entry point's name is
the spec prefix, ``--llm NAME:...``; its object is a factory taking the text after the colon) and
``mmreact.systems`` (end-to-end systems for ``mmreact eval``: the same, for ``--system
NAME:...``). mmreact's own entries are :class:`~importlib.metadata.EntryPoint` objects written
here in code and loaded through the same :func:`discover` as a third party's, so the plug-in path
is the one every built-in takes; they do not depend on the package's install metadata (a source
checkout on ``PYTHONPATH`` has its built-ins too). An entry is loaded only when it is used.

A plug-in that fails to load is reported (:class:`Failure`) and skipped; a name that a built-in
or an earlier plug-in already has is refused and reported, never silently replaced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

log = logging.getLogger("mmreact")
log.addHandler(logging.NullHandler())  # the application decides where warnings go


@dataclass(frozen=True, slots=True)
class Failure:
    """An entry point that could not be used."""

    entry_point: str
    distribution: str
    error: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A registered name: its entry point and the distribution that provides it (``mmreact`` for built-ins)."""

    name: str
    entry_point: EntryPoint
    distribution: str

    @property
    def builtin(self) -> bool:
        return self.distribution == "mmreact"


def builtins(group: str, targets: Mapping[str, str]) -> list[EntryPoint]:
    """mmreact's own entries of ``group``: name -> ``"module:attr"``."""
    return [EntryPoint(name, target, group) for name, target in targets.items()]


_lock = threading.Lock()
_cache: dict[str, tuple[dict[str, Entry], list[Failure]]] = {}


def discover(group: str, own: list[EntryPoint], *, refresh: bool = False) -> tuple[dict[str, Entry], list[Failure]]:
    """Every name registered in ``group`` (built-ins first, then installed plug-ins), found once per
    process; names are matched case-insensitively."""
    with _lock:
        if refresh or group not in _cache:
            found: dict[str, Entry] = {ep.name.lower(): Entry(ep.name.lower(), ep, "mmreact") for ep in own}
            failures: list[Failure] = []
            for ep in entry_points(group=group):
                dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
                key = ep.name.strip().lower()
                if key in found:
                    failures.append(Failure(f"{ep.name} = {ep.value}", dist, f"the name '{key}' is already taken"))
                    log.warning("plug-in %s (%s) was skipped: the name %r is already taken", ep.name, dist, key)
                    continue
                found[key] = Entry(key, ep, dist)
            _cache[group] = (found, failures)
        found, failures = _cache[group]
        return dict(found), list(failures)

"""Fingerprints: what produced a result line, so that results made differently are never mixed.

Every line of ``results.jsonl`` carries::

    "fingerprint": {"mmreact": "0.1.0",
                    "system": {"type": "mmreact.Agent", "llm": "default:SmolLM2-...", ...},
                    "scorer": "default@2",
                    "item": {"input": "<hash of question + image bytes>", "key": "<hash of answers + choices>"}}

* ``system``: the system's settings. A system that has ``eval_settings()`` says them itself (any
  JSON-able mapping; new settings join the fingerprint by being returned there, the runner does
  not change). Otherwise they are derived: for :class:`mmreact.Agent` its LLM (``llm.eval_settings()``,
  else its name and public settings: temperature, seed, grammar options ...), each tool's name
  and ``cache_version``, ``max_steps``, ``max_errors``, ``tool_timeout``, ``grounding`` and a hash of the
  system prompt; for any other object its class and the attributes of :data:`SYSTEM_SETTINGS`
  it has (an end-to-end model's name, checkpoint, token budget, dtype ...). LLM attributes that
  change speed only (:data:`mmreact._hashing.NOT_SETTINGS`: thread counts, timeouts) are left out; long values
  are stored as hashes. A custom system whose answers depend on other settings should say them
  in ``eval_settings()``. A system shown solved examples (:mod:`mmreact.fewshot`, the agent's or an
  end-to-end model's ``examples``) adds ``examples``: their number and a hash of what the model is
  shown (rendered exchanges, images), so results made with other examples, or none, never mix; a
  system without examples has no such key, so its fingerprint is the one it had before examples existed.
* ``mmreact``: the version; a new version may answer differently, so it counts as the system.
* ``scorer``: the scorer's spec and the version of the scoring rules (``Scorer.fingerprint``).
* ``item``: ``input`` hashes what the system sees (question, image file bytes); ``key`` hashes
  what only scoring sees (answers, choices).

:func:`compare` tells what changed: a change of scorer or ``key`` can be rescored from the saved
prediction without running the system; a change of system, version or ``input`` cannot.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._hashing import SCALARS as _SCALARS
from .._hashing import digest

if TYPE_CHECKING:
    from .dataset import EvalItem

#: Strings longer than this, and lists with more items than MANY, are stored as their hash.
LONG = 120
MANY = 16




def _compact(value: Any) -> Any:
    """JSON-able; strings over :data:`LONG` characters and lists over :data:`MANY` items become ``sha256:...``."""
    if isinstance(value, Mapping):
        return {str(k): _compact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_compact(v) for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort(key=str)
        return f"sha256:{digest(items)}" if len(items) > MANY else items
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return "nan"
    if not isinstance(value, _SCALARS):
        value = str(value)
    return f"sha256:{digest(value)}" if isinstance(value, str) and len(value) > LONG else value


#: Attributes of a system without ``eval_settings()`` (e.g. :mod:`mmreact.mllm`'s end-to-end models)
#: that decide its answers. Other public attributes may be run-time state, so they are not read.
SYSTEM_SETTINGS = ("name", "model_id", "model", "base_url", "max_new_tokens", "max_tokens", "dtype_preference",
                   "detail", "max_side", "temperature")


def system_settings(system: Any) -> dict[str, Any]:
    """The settings that decide how ``system`` answers (see the module docstring)."""
    method = getattr(system, "eval_settings", None)
    if callable(method):
        settings = dict(method())
    else:
        settings = {"type": f"{type(system).__module__}.{type(system).__qualname__}"}
        for k in SYSTEM_SETTINGS:
            v = getattr(system, k, None)
            if v is not None and isinstance(v, _SCALARS):
                settings[k] = v
    shown = getattr(system, "examples", None)
    if shown is not None and getattr(shown, "fingerprint", None):  # solved examples (mmreact.fewshot)
        settings["examples"] = {"count": len(shown), "digest": shown.fingerprint}
    return {str(k): _compact(v) for k, v in settings.items()}


_file_hashes: dict[tuple[str, int, int], str] = {}
_file_lock = threading.Lock()


def file_hash(path: str) -> str:
    """sha256 of a file's bytes (memoised by path, size and modification time)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _file_lock:
        if key in _file_hashes:
            return _file_hashes[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    value = h.hexdigest()[:16]
    with _file_lock:
        _file_hashes[key] = value
    return value


def item_fingerprint(item: EvalItem) -> dict[str, str]:
    """``input``: question and images' bytes; ``key``: answers and choices."""
    images = [file_hash(p) if Path(p).is_file() else f"missing:{p}" for p in item.images]
    return {"input": digest({"question": item.question, "images": images}),
            "key": digest({"answers": list(item.answers), "choices": list(item.choices)})}


@dataclass(frozen=True)
class Fingerprint:
    mmreact: str
    system: dict[str, Any]
    scorer: str
    item: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"mmreact": self.mmreact, "system": self.system, "scorer": self.scorer, "item": self.item}

    @classmethod
    def from_dict(cls, data: Any) -> Fingerprint | None:
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(mmreact=str(data["mmreact"]), system=dict(data["system"]), scorer=str(data["scorer"]),
                       item={str(k): str(v) for k, v in dict(data["item"]).items()})
        except (KeyError, TypeError, ValueError):
            return None


def make(system: dict[str, Any], scorer: str, item: dict[str, str]) -> Fingerprint:
    from .. import __version__

    return Fingerprint(mmreact=__version__, system=system, scorer=scorer, item=item)


@dataclass(frozen=True)
class Change:
    """What differs between a saved line's fingerprint and the current one."""

    system: list[str]  # "llm: 'a' -> 'b'", "mmreact 0.1.0 -> 0.2.0", "no fingerprint"
    input: bool
    scorer: tuple[str, str] | None
    key: bool

    @property
    def any(self) -> bool:
        return bool(self.system or self.input or self.scorer or self.key)

    @property
    def rescorable(self) -> bool:
        """Only the scoring changed: the saved prediction can be scored again."""
        return self.any and not self.system and not self.input


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare(old: Fingerprint | None, new: Fingerprint) -> Change:
    if old is None:
        return Change(system=["no fingerprint (written by an older mmreact)"], input=True, scorer=None, key=True)
    system = []
    if old.mmreact != new.mmreact:
        system.append(f"mmreact {old.mmreact} -> {new.mmreact}")
    a_flat, b_flat = _flat(old.system), _flat(new.system)
    for k in sorted(set(a_flat) | set(b_flat), key=lambda k: (k != "type", k)):
        a, b = a_flat.get(k, "(none)"), b_flat.get(k, "(none)")
        if a != b:
            system.append(f"{k} {_shown(a)} -> {_shown(b)}")
    return Change(system=system, input=old.item.get("input") != new.item.get("input"),
                  scorer=(old.scorer, new.scorer) if old.scorer != new.scorer else None,
                  key=old.item.get("key") != new.item.get("key"))

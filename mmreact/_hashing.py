"""The one way mmreact hashes settings and text (sha256 of canonical JSON, truncated), and reads the
settings of an object that a fingerprint holds.

A string is hashed as its UTF-8 bytes; anything else as JSON with sorted keys (``default=str``
for values JSON lacks). Fingerprints of eval results, datagen runs and templates, prompt
identities and cache keys all use :func:`digest`, so two places never hash the same thing two ways.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def canonical(value: Any) -> str:
    """``value`` as the text that is hashed (a string stays itself)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def digest(value: Any, size: int = 16) -> str:
    """The first ``size`` hex digits of the sha256 of ``value``'s :func:`canonical` text."""
    return hashlib.sha256(canonical(value).encode("utf-8")).hexdigest()[:size]


SCALARS = (str, int, float, bool, type(None))


#: Public attributes of an LLM that change speed or robustness, not answers.
NOT_SETTINGS = frozenset({"n_threads", "max_concurrency", "timeout", "max_retries", "device_preference"})


def public_settings(obj: Any) -> dict[str, Any]:
    """Public attributes that are scalars or dataclasses (as dicts), minus :data:`NOT_SETTINGS`."""
    try:
        attrs = vars(obj)
    except TypeError:
        return {}
    out: dict[str, Any] = {}
    for k, v in sorted(attrs.items()):
        if k.startswith("_") or k in NOT_SETTINGS:
            continue
        if isinstance(v, SCALARS):
            out[k] = v
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            out[k] = dataclasses.asdict(v)
    return out


def llm_settings(llm: Any) -> Any:
    """An LLM's settings for a fingerprint: its ``eval_settings()``, else its name and public settings."""
    method = getattr(llm, "eval_settings", None)
    if callable(method):
        return method()
    return {"name": getattr(llm, "name", None) or type(llm).__qualname__, **public_settings(llm)}

"""One generated record per (image, kind): what went in, what came out, and the filters' verdict.

A record's ``id`` is fixed by the image's pixel hash and the kind (:func:`record_id`), so a
rerun finds what is done and an image is never generated twice. Records are plain JSON lines.

``status`` is ``accepted`` (at least one question/answer pair kept and no reason against the
whole record), ``rejected`` (kept in the store with its reasons, skipped at export) or ``error``
(the image could not be read, or an expert or the LLM failed; ``error`` says why).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Reason", "Record", "record_id", "error_id"]

STATUSES = ("accepted", "rejected", "error")


def record_id(sha256: str, kind: str) -> str:
    """The fixed id of a record: the first 16 hex digits of the image's pixel hash, and the kind."""
    return f"{sha256[:16]}-{kind}"


def error_id(image: str, kind: str) -> str:
    """The id of an error record for an image that could not be read (no pixel hash): by path."""
    return f"file{hashlib.sha256(image.encode('utf-8')).hexdigest()[:12]}-{kind}"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a record, or one of its question/answer pairs (``pair``), was dropped."""

    filter: str  # structure, leakage, hallucination, count, refusal, repetition, duplicate
    detail: str
    pair: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"filter": self.filter, "detail": self.detail, "pair": self.pair}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reason:
        pair = data.get("pair")
        return cls(str(data["filter"]), str(data.get("detail", "")), None if pair is None else int(pair))


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    image: str  # relative to the image folder, "/"-separated
    kind: str
    status: str = "accepted"
    image_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    context: dict[str, Any] | None = None  # Context.to_dict()
    prompt_context: str | None = None  # the context text the LLM read
    raw: str | None = None  # the LLM's reply
    cleaned: str | None = None  # the cleanup pass's reply (detail, with cleanup on)
    pairs: tuple[dict[str, str], ...] = ()  # parsed question/answer pairs
    problems: tuple[str, ...] = ()  # what the parser found wrong
    kept: tuple[int, ...] = ()  # indexes into pairs that passed the filters
    reasons: tuple[Reason, ...] = ()
    error: str | None = None
    llm: dict[str, Any] = field(default_factory=dict)  # name, calls, prompt/completion tokens, seconds
    format_ok: bool | None = None  # whether the reply was inside the constrained format
    config: str = ""  # fingerprint of the run configuration that made it
    file_stat: tuple[int, int] | None = None  # the image file's (size, mtime_ns) when it was read

    @property
    def kept_pairs(self) -> list[dict[str, str]]:
        return [self.pairs[i] for i in self.kept if 0 <= i < len(self.pairs)]

    @property
    def tokens(self) -> tuple[int, int]:
        return int(self.llm.get("prompt_tokens") or 0), int(self.llm.get("completion_tokens") or 0)

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pairs"] = [dict(p) for p in self.pairs]
        data["problems"] = list(self.problems)
        data["kept"] = list(self.kept)
        data["reasons"] = [r.to_dict() for r in self.reasons]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if known.get("status") not in STATUSES:
            raise ValueError(f"unknown status {known.get('status')!r}")
        known["pairs"] = tuple({"question": str(p["question"]), "answer": str(p["answer"])}
                               for p in known.get("pairs") or ())
        known["problems"] = tuple(str(p) for p in known.get("problems") or ())
        known["kept"] = tuple(int(i) for i in known.get("kept") or ())
        known["reasons"] = tuple(Reason.from_dict(r) for r in known.get("reasons") or ())
        known["llm"] = dict(known.get("llm") or {})
        stat = known.get("file_stat")
        known["file_stat"] = None if not stat else (int(stat[0]), int(stat[1]))
        for key in ("id", "image", "kind"):
            if not isinstance(known.get(key), str):
                raise ValueError(f"'{key}' must be a string")
        return cls(**known)

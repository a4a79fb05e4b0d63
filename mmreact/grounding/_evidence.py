"""What the experts saw, as :class:`Evidence`: from tool calls (their artifacts) or a datagen context.

Built-in artifacts are read by their keys, whoever wrote them (a plug-in or a Ray Serve remote
tool with the same keys is read the same way): ``lines`` (OCR: ``text``, ``box``), ``caption``,
``regions`` (``caption``, ``box``), ``objects`` (``label``, ``box``; plus one ``count`` per label),
``tags`` (``tag``). Any other tool's content is its observation text, line by line, without the
``Image size`` line, lines that end in ``:`` (headings) and bracketed coordinates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from ..findings import Findings
from ._records import Evidence

_HANDLE = re.compile(r"^image_\d+$")
_COORDS = re.compile(r"\[\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3}\s*\]")
_HEADER = re.compile(r"^(?:Image size:.*|.*:\s*|No text found\.|No objects detected.*)$")
_UNSURE = re.compile(r"\s*\(unsure\)\s*$")


class CallLike(Protocol):
    """What evidence is read from: a :class:`mmreact.trace.CallRecord` (or anything shaped like one)."""

    call: str
    text: str
    artifact: Any
    error: bool
    args: dict[str, Any]


def _clean(text: Any) -> str:
    return " ".join(str(text).split())


def _image_of(record: CallLike) -> str | None:
    for value in (record.args or {}).values():
        if isinstance(value, str) and _HANDLE.match(value):
            return value
    return None


def _plural(label: str) -> str:
    from .vocab import plural

    return plural(label)


def from_artifact(artifact: Any, call: str | None = None, image: str | None = None,
                  text: str = "") -> list[Evidence]:
    """Evidence in one tool result (read by :class:`mmreact.findings.Findings`: lines, captions,
    regions, objects plus one count per label, tags); ``text`` is read when the artifact holds none
    of those (a plug-in's own artifact)."""
    found = Findings.from_artifact(artifact)
    known = found.ran & {"text", "caption", "region", "object", "tag"}
    if not known:
        return from_text(text, call, image)
    out: list[Evidence] = []
    for f in found:
        if f.kind in ("text", "caption", "region", "object", "tag"):
            out.append(Evidence(text=f.text, kind=f.kind, call=call, image=image,
                                line=None if f.kind == "caption" else f.index, box=f.box))
    for label, n in found.counts().items():
        out.append(Evidence(text=f"{n} {_plural(label) if n != 1 else label}", kind="count", call=call, image=image))
    return out


def from_text(text: str, call: str | None = None, image: str | None = None) -> list[Evidence]:
    """The content lines of a free-form observation (headings and coordinates dropped)."""
    out: list[Evidence] = []
    for line in (text or "").splitlines():
        line = _clean(_UNSURE.sub("", _COORDS.sub(" ", line)))
        if not line or _HEADER.match(line):
            continue
        if ":" in line:  # "Main colours: green 40%, red 10%": the label is format, the rest content
            head, _, rest = line.partition(":")
            if rest.strip() and len(head.split()) <= 4:
                line = rest.strip()
        out.append(Evidence(text=line, kind="other", call=call, image=image, line=len(out)))
    return out


def from_calls(records: Iterable[CallLike]) -> list[Evidence]:
    """Evidence in every successful call (failed calls and error observations say nothing)."""
    out: list[Evidence] = []
    seen: set[str] = set()
    for r in records:
        if r.error or r.call in seen:
            continue
        seen.add(r.call)
        out += from_artifact(r.artifact, r.call, _image_of(r), r.text)
    return out


def from_context(context: Any) -> list[Evidence]:
    """Evidence in a :class:`mmreact.datagen.context.Context` (captions, objects, tags, OCR lines)."""
    out = [Evidence(text=c, kind="caption") for c in context.captions]
    counts: Counter[str] = Counter()
    for o in context.objects:
        kind = "object" if o.source in ("detect", "annotation") else "region"
        out.append(Evidence(text=o.label, kind=kind))
        if kind == "object":
            counts[o.label] += 1
    out += [Evidence(text=f"{n} {_plural(label) if n != 1 else label}", kind="count") for label, n in counts.items()]
    out += [Evidence(text=t, kind="tag") for t in context.tags]
    out += [Evidence(text=t, kind="text", line=i) for i, t in enumerate(context.ocr)]
    return out

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
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

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


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4:
        try:
            x1, y1, x2, y2 = (float(v) for v in value)
        except (TypeError, ValueError):
            return None
        return (x1, y1, x2, y2)
    return None


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
    """Evidence in one tool result (see the module notes); ``text`` is read when the artifact is unknown."""
    out: list[Evidence] = []
    known = False
    if isinstance(artifact, Mapping):
        lines = artifact.get("lines")
        if isinstance(lines, list):
            known = True
            for i, ln in enumerate(lines):
                if isinstance(ln, Mapping) and _clean(ln.get("text", "")):
                    out.append(Evidence(text=_clean(ln["text"]), kind="text", call=call, image=image, line=i,
                                        box=_box(ln.get("box"))))
        caption = artifact.get("caption")
        if isinstance(caption, str):
            known = True
            if _clean(caption):
                out.append(Evidence(text=_clean(caption), kind="caption", call=call, image=image))
        regions = artifact.get("regions")
        if isinstance(regions, list):
            known = True
            for i, r in enumerate(regions):
                if isinstance(r, Mapping) and _clean(r.get("caption", "")):
                    out.append(Evidence(text=_clean(r["caption"]), kind="region", call=call, image=image, line=i,
                                        box=_box(r.get("box"))))
        objects = artifact.get("objects")
        if isinstance(objects, list):
            known = True
            counts: Counter[str] = Counter()
            for i, o in enumerate(objects):
                if isinstance(o, Mapping) and _clean(o.get("label", "")):
                    label = _clean(o["label"])
                    counts[label] += 1
                    out.append(Evidence(text=label, kind="object", call=call, image=image, line=i,
                                        box=_box(o.get("box"))))
            for label, n in counts.items():
                out.append(Evidence(text=f"{n} {_plural(label) if n != 1 else label}", kind="count", call=call,
                                    image=image))
        tags = artifact.get("tags")
        if isinstance(tags, list):
            known = True
            for i, t in enumerate(tags):
                if isinstance(t, Mapping) and _clean(t.get("tag", "")):
                    out.append(Evidence(text=_clean(t["tag"]), kind="tag", call=call, image=image, line=i))
    if not known:
        out += from_text(text, call, image)
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

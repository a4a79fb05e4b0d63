"""The text-only view of an image that the LLM writes from (LLaVA's "symbolic representation").

Built from the experts' artifacts (or from a user's own annotations), stored in every record, and
rendered the way LLaVA's prompts show it: caption sentences one per line, a blank line, then one
line per object ``label: [x1, y1, x2, y2]`` with coordinates normalised to 0-1 (top-left,
bottom-right) and rounded to 3 decimals; then, when the image holds text, the OCR lines.

Decisions:

- Boxes come in as mmreact's pixel ``[x1, y1, x2, y2]`` on the original image and are divided by
  the width and height, clipped into 0-1, and rounded to 3 decimals (``0.63``, not ``0.630``).
- Detections below ``min_confidence`` are dropped; objects are listed by confidence (detections
  first, then dense-caption regions, which have none) and cut at ``max_objects``. OCR lines below
  ``min_ocr_confidence`` are dropped, each cut at ``max_ocr_chars``, at most ``max_ocr_lines``.
- ``detected`` records whether an object detector (or a user's boxes) looked at the image: only
  then do counts in the text mean anything (the count filter relies on it).
- Conversation prompts get the context without boxes (as LLaVA generated its conversations from
  captions alone); objects are then listed by label with their number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..findings import Findings

__all__ = ["Context", "ContextObject", "ContextOptions", "from_artifacts", "normalise_box"]


@dataclass(frozen=True, slots=True)
class ContextOptions:
    min_confidence: float = 0.3
    max_objects: int = 30
    max_captions: int = 5
    min_ocr_confidence: float = 0.1
    max_ocr_lines: int = 25
    max_ocr_chars: int = 160
    max_tags: int = 10
    min_tag_score: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ContextObject:
    """One object: a label (a class name or a region's caption) and its normalised box."""

    label: str
    box: tuple[float, float, float, float]
    source: str  # "detect", "dense_caption", "annotation", or a plug-in tool's name
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "box": list(self.box), "source": self.source, "confidence": self.confidence}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextObject:
        box = tuple(float(v) for v in data["box"])
        if len(box) != 4:
            raise ValueError("a box needs 4 numbers")
        conf = data.get("confidence")
        return cls(str(data["label"]), box, str(data.get("source") or "annotation"),  # type: ignore[arg-type]
                   None if conf is None else float(conf))


@dataclass(frozen=True, slots=True)
class Context:
    """What is known about one image, for the LLM and for the filters."""

    width: int
    height: int
    captions: tuple[str, ...] = ()
    objects: tuple[ContextObject, ...] = ()
    ocr: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    detected: bool = False
    sources: tuple[str, ...] = field(default=())  # the tools (or "annotations") it came from

    @property
    def empty(self) -> bool:
        return not (self.captions or self.objects or self.ocr or self.tags)

    def detection_counts(self) -> Counter[str]:
        """Objects per label from the detector (or a user's boxes): what counts are checked against."""
        return Counter(o.label for o in self.objects if o.source in ("detect", "annotation"))

    def text(self, boxes: bool = True) -> str:
        """The context as the LLM reads it (see the module notes)."""
        parts: list[str] = []
        if self.captions:
            parts.append("\n".join(self.captions))
        if self.objects:
            if boxes:
                parts.append("\n".join(f"{o.label}: [{', '.join(_num(v) for v in o.box)}]" for o in self.objects))
            else:
                counts = Counter(o.label for o in self.objects)
                parts.append("Objects: " + ", ".join(f"{label} ({n})" if n > 1 else label
                                                     for label, n in counts.items()))
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags))
        if self.ocr:
            parts.append("Text in the image:\n" + "\n".join(self.ocr))
        return "\n\n".join(parts)

    def vocabulary_text(self) -> str:
        """Every word in the context, for finding which objects it mentions (no numbers)."""
        return "\n".join([*self.captions, *(o.label for o in self.objects), *self.tags, *self.ocr])

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "captions": list(self.captions),
                "objects": [o.to_dict() for o in self.objects], "ocr": list(self.ocr), "tags": list(self.tags),
                "detected": self.detected, "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Context:
        return cls(width=int(data["width"]), height=int(data["height"]),
                   captions=tuple(str(c) for c in data.get("captions") or ()),
                   objects=tuple(ContextObject.from_dict(o) for o in data.get("objects") or ()),
                   ocr=tuple(str(t) for t in data.get("ocr") or ()),
                   tags=tuple(str(t) for t in data.get("tags") or ()),
                   detected=bool(data.get("detected")), sources=tuple(data.get("sources") or ()))

    def merged(self, other: Context) -> Context:
        """This context with ``other``'s facts added (user annotations plus experts)."""
        return Context(self.width, self.height, (*self.captions, *other.captions), (*self.objects, *other.objects),
                       (*self.ocr, *other.ocr), (*self.tags, *other.tags), self.detected or other.detected,
                       tuple(dict.fromkeys((*self.sources, *other.sources))))


def _num(v: float) -> str:
    return repr(round(float(v), 3))  # 0.63, 1.0: as LLaVA's examples write them


def normalise_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel ``[x1, y1, x2, y2]`` -> 0-1 fractions of the width and height, clipped, 3 decimals."""
    if width <= 0 or height <= 0:
        raise ValueError("the image has no area")
    x1, y1, x2, y2 = (float(v) for v in box)
    xs = sorted((min(max(x1 / width, 0.0), 1.0), min(max(x2 / width, 0.0), 1.0)))
    ys = sorted((min(max(y1 / height, 0.0), 1.0), min(max(y2 / height, 0.0), 1.0)))
    return (round(xs[0], 3), round(ys[0], 3), round(xs[1], 3), round(ys[1], 3))


def _clean(text: Any) -> str:
    return " ".join(str(text).split())


def from_artifacts(artifacts: Mapping[str, Any], width: int, height: int,
                   options: ContextOptions | None = None) -> Context:
    """A context from the experts' artifacts, keyed by tool name.

    Each artifact is read by :class:`mmreact.findings.Findings` (the keys the built-in experts
    write: ``caption``, ``regions``, ``objects``, ``lines``, ``tags``; a plug-in tool whose artifact
    uses the same keys is read the same way).
    """
    opt = options or ContextOptions()
    captions: list[str] = []
    detections: list[ContextObject] = []
    regions: list[ContextObject] = []
    ocr: list[str] = []
    tags: list[str] = []
    detected = False
    for tool, art in artifacts.items():
        found = Findings.from_artifact(art)
        detected = detected or "object" in found.ran
        for f in found:
            if f.kind == "caption":
                captions.append(_sentence(f.text))
            elif f.kind == "region" and f.box is not None:
                regions.append(ContextObject(f.text, normalise_box(f.box, width, height), tool))
            elif f.kind == "object" and f.box is not None and (f.score is None or f.score >= opt.min_confidence):
                detections.append(ContextObject(f.text, normalise_box(f.box, width, height), "detect",
                                                None if f.score is None else round(f.score, 3)))
            elif f.kind == "text" and (f.score is None or f.score >= opt.min_ocr_confidence):
                ocr.append(f.text[: opt.max_ocr_chars])
            elif f.kind == "tag" and (f.score is None or f.score >= opt.min_tag_score):
                tags.append(f.text)
    detections.sort(key=lambda o: -(o.confidence or 0.0))
    return Context(width=width, height=height, captions=tuple(dict.fromkeys(captions))[: opt.max_captions],
                   objects=tuple([*detections, *regions][: opt.max_objects]), ocr=tuple(ocr[: opt.max_ocr_lines]),
                   tags=tuple(tags[: opt.max_tags]), detected=detected, sources=tuple(artifacts))


def _sentence(text: str) -> str:
    """A caption as a sentence: capitalised, ending with a full stop."""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."

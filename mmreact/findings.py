"""What an expert found, as one typed record that every reader shares.

A tool's artifact stays plain JSON (that is what a trace stores and what a plug-in writes);
:meth:`Findings.from_artifact` is the one place that reads it, the way supervision's
``Detections`` is the one container its model adapters convert into. The boxes drawn on a picture
(:mod:`mmreact.views.boxes`), the evidence an answer is checked against (:mod:`mmreact.grounding`)
and the text a datagen model writes from (:mod:`mmreact.datagen.context`) all read it.

Artifact keys, as the built-in experts write them (a plug-in that uses the same keys is read the
same way):

* ``lines`` (OCR): ``[{"text", "box", "confidence"}]`` -> kind ``text``;
* ``caption``: a string -> kind ``caption`` (no box);
* ``regions`` (dense captions): ``[{"caption", "box"}]`` -> kind ``region``;
* ``objects`` (detection): ``[{"label", "confidence", "box"}]`` -> kind ``object``;
* ``tags``: ``[{"tag", "score"}]`` -> kind ``tag``;
* ``answer``: ``[{"label", "box"}]``, the boxes that support an answer (grounding) -> kind ``answer``;
* any other key holding a list of dicts with a ``"box"`` -> kind ``other``, labelled by its
  ``label``, ``caption``, ``text``, ``name``, ``tag`` or ``class`` (else the key).

Boxes are pixel ``[x1, y1, x2, y2]`` on the original image (mmreact's one convention), kept as
given when they are four finite numbers and dropped otherwise (an artifact is data from a model,
never trusted); views clip them to the image. Entries without text are skipped.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

Kind = Literal["text", "caption", "region", "object", "tag", "answer", "other"]
Box = tuple[float, float, float, float]

#: artifact key -> (kind, fields that may hold the finding's text, in order)
KEYS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "lines": ("text", ("text", "label")),
    "regions": ("region", ("caption", "text", "label")),
    "objects": ("object", ("label", "name", "class")),
    "tags": ("tag", ("tag", "label")),
    "answer": ("answer", ("label",)),
}
LABEL_FIELDS = ("label", "caption", "text", "name", "tag", "class")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing an expert found: its kind, its text (the OCR line, caption, label or tag), its
    pixel box when it has one, and its confidence or score when the expert gave one."""

    kind: Kind
    text: str
    box: Box | None = None
    score: float | None = None
    #: Its position among the artifact's findings of its key (the OCR line number, from 0).
    index: int = 0


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def as_box(value: Any) -> Box | None:
    """Four finite numbers as a box, else ``None``."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    nums = [_number(v) for v in value]
    if any(v is None for v in nums):
        return None
    return (nums[0], nums[1], nums[2], nums[3])  # type: ignore[return-value]


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


@dataclass(frozen=True)
class Findings(Sequence[Finding]):
    """Everything one tool result holds, in artifact order; ``ran`` names the kinds whose expert
    ran (an ``objects`` key with an empty list: the detector ran and found nothing)."""

    items: tuple[Finding, ...] = ()
    ran: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_artifact(cls, artifact: Any) -> Findings:
        if not isinstance(artifact, Mapping):
            return cls()
        items: list[Finding] = []
        ran: set[str] = set()
        for key, value in artifact.items():
            if key == "caption" and isinstance(value, str):
                ran.add("caption")
                if _text(value):
                    items.append(Finding("caption", _text(value)))
                continue
            if not isinstance(value, list):
                continue
            kind, fields = KEYS.get(key, ("other", LABEL_FIELDS))
            if kind == "other" and not any(isinstance(e, Mapping) and "box" in e for e in value):
                continue
            ran.add(kind)
            for i, entry in enumerate(value):
                if not isinstance(entry, Mapping):
                    continue
                text = next((_text(entry[f]) for f in fields if _text(entry.get(f))), "")
                if kind == "other" and not text:
                    text = key
                if not text:
                    continue
                score = _number(entry.get("confidence", entry.get("score")))
                items.append(Finding(kind, text, as_box(entry.get("box")), score, i))
        return cls(tuple(items), frozenset(ran))

    @classmethod
    def from_call(cls, record: Any) -> Findings:
        """A call's findings (a :class:`~mmreact.trace.CallRecord` or an observation); a failed call has none."""
        if getattr(record, "error", False):
            return cls()
        return cls.from_artifact(getattr(record, "artifact", None))

    def of(self, *kinds: Kind) -> Findings:
        """Only the findings of these kinds."""
        return Findings(tuple(f for f in self.items if f.kind in kinds), self.ran & frozenset(kinds))

    @property
    def boxed(self) -> tuple[Finding, ...]:
        """The findings that have a box."""
        return tuple(f for f in self.items if f.box is not None)

    def counts(self) -> Counter[str]:
        """Detected objects per label."""
        return Counter(f.text for f in self.items if f.kind == "object")

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> Finding: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Finding]: ...
    def __getitem__(self, i: int | slice) -> Finding | Sequence[Finding]:
        return self.items[i]

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.items)

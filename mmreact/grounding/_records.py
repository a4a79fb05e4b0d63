"""The grounding records: what the experts saw (:class:`Evidence`), one fact of an answer
(:class:`Fact`) and the verdict on a whole answer (:class:`Grounding`). Frozen, JSON round-trip
(they travel inside :class:`mmreact.trace.Trace`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

#: What an expert reported: an OCR ``text`` line, an image ``caption``, a dense-caption ``region``,
#: a detected ``object`` (its label), a detector's ``count`` of one label, a ``tag``, or ``other``
#: content of a tool whose artifact mmreact does not know (its observation's lines).
EvidenceKind = Literal["text", "caption", "region", "object", "count", "tag", "other"]
#: The kinds that say what is *in* the picture: only when one of them was seen are object words
#: in an answer checked (text printed on a thing does not name the thing).
VISUAL_KINDS: frozenset[str] = frozenset({"caption", "region", "object", "tag"})
FactKind = Literal["number", "amount", "time", "date", "code", "name", "quote", "object"]
#: ``constrain``: the answer was decoded under a grammar built from the evidence, then checked;
#: ``reask``: checked, and the model was asked once more when a fact was unsupported;
#: ``check``: checked only; ``off``: not checked (see :class:`mmreact.Agent`'s ``grounding``).
Mode = Literal["constrain", "reask", "check", "off"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence(_Frozen):
    """One piece of what the experts saw: content only, never format text or coordinates."""

    text: str
    kind: EvidenceKind
    #: The call that produced it, e.g. ``ocr(image_1)`` (``None`` for a datagen context).
    call: str | None = None
    #: The image handle the call looked at, when it names one.
    image: str | None = None
    #: Its position among the call's findings (the OCR line number, from 0).
    line: int | None = None
    #: Pixel ``[x1, y1, x2, y2]`` on the original image, when the expert gave one.
    box: tuple[float, float, float, float] | None = None


class Fact(_Frozen):
    """One checkable fact of an answer, and what supports it (if anything)."""

    #: The fact as the answer writes it, and where (``answer[start:end]``).
    text: str
    start: int
    end: int
    kind: FactKind
    supported: bool
    #: The evidence that supports it (for a computed number, the first operand's).
    evidence: Evidence | None = None
    #: What the evidence says, when it is written differently (``"14.35"`` for ``14:35``), or the
    #: computation a number came from (``"2 x 2.75 + 2.75"``).
    note: str | None = None


class Grounding(_Frozen):
    """The verdict on one answer: its facts, each supported or not."""

    mode: Mode
    facts: tuple[Fact, ...] = ()
    #: Whether object words were checked: only when an expert that sees objects (caption, dense
    #: captions, detection, tags) ran; with only OCR an object word is neither for nor against.
    objects_checked: bool = False
    #: The first answer, when ``reask`` asked again because of its unsupported facts.
    first_answer: str | None = None

    @property
    def supported(self) -> bool:
        """Every fact is supported (an answer without facts, "yes" say, is supported)."""
        return all(f.supported for f in self.facts)

    @property
    def unsupported(self) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if not f.supported)

    def summary(self) -> str:
        """One line: ``2 facts, all supported`` or ``1 of 2 facts unsupported: '$25'``."""
        n = len(self.facts)
        if not n:
            return "no checkable facts"
        bad = self.unsupported
        if not bad:
            return f"{n} fact{'s' if n != 1 else ''}, all supported"
        named = ", ".join(repr(f.text) for f in bad)
        return f"{len(bad)} of {n} fact{'s' if n != 1 else ''} unsupported: {named}"

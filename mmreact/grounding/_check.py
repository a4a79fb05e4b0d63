"""Matching an answer's facts against the evidence (see :func:`mmreact.grounding.ground`)."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from decimal import Decimal

from ._facts import (
    _DATE,
    _TIME,
    Span,
    dates_in,
    decimal,
    find_facts,
    numbers_in,
    times_in,
)
from ._records import VISUAL_KINDS, Evidence, Fact, Grounding, Mode

_PUNCT = re.compile(r"[^\w\s]")
_DIGIT_LOOKALIKES = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l"})
#: Letter pairs OCR reads for one letter.
_MERGES = (("rn", "m"), ("vv", "w"), ("cl", "d"))
#: Computed numbers written as whole numbers below this ("5", not "5.00") are too easily hit by
#: chance to count.
MIN_COMPUTED = Decimal(10)


def fold(text: str) -> str:
    """Text for matching names, quotes and codes: case, punctuation and OCR's look-alikes folded
    (``0``/``o``, ``1``/``l``/``i``/``|``, ``rn``/``m``, ``vv``/``w``, ``cl``/``d``)."""
    t = _PUNCT.sub(" ", text.casefold().replace("\u2019", "'").replace("'", "")).translate(_DIGIT_LOOKALIKES)
    for a, b in _MERGES:
        t = t.replace(a, b)
    return " ".join(t.split())


def _mask_times_dates(text: str) -> str:
    for pattern in (_DATE, _TIME):
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


class _Index:
    """The evidence, pre-read once per check: folded texts, numbers, times, dates."""

    def __init__(self, evidence: Sequence[Evidence]) -> None:
        self.evidence = list(evidence)
        self.folded = [f" {fold(e.text)} " for e in self.evidence]
        # The lines of one call, joined: a name that OCR split over two lines is still there.
        self.joined: list[tuple[str, Evidence]] = []
        by_call: dict[str | None, list[Evidence]] = {}
        for e in self.evidence:
            if e.kind in ("text", "other"):
                by_call.setdefault(e.call, []).append(e)
        for items in by_call.values():
            if len(items) > 1:
                self.joined.append((" " + " ".join(fold(e.text) for e in items) + " ", items[0]))
        self.numbers = [(v, raw, e) for e in self.evidence for v, raw in numbers_in(e.text)]
        # Operands of computed answers: not the pieces of times and dates ("7:30" is no 30).
        self.operands = [(v, raw, e) for e in self.evidence for v, raw in numbers_in(_mask_times_dates(e.text))]
        self.times = [(v, raw, e) for e in self.evidence for v, raw in times_in(e.text)]
        self.dates = [(v, raw, e) for e in self.evidence for v, raw in dates_in(e.text)]

    @functools.cached_property
    def tokens(self) -> list[tuple[list[str], Evidence]]:
        return [(f.split(), e) for f, e in zip(self.folded, self.evidence)]

    def phrase(self, text: str) -> Evidence | None:
        """The evidence that holds ``text`` as whole words (folded), else ``None``."""
        needle = f" {fold(text)} "
        if not needle.strip():
            return None
        for hay, e in zip(self.folded, self.evidence):
            if needle in hay:
                return e
        for hay, e in self.joined:
            if needle in hay:
                return e
        return None

    def code(self, text: str) -> Evidence | None:
        """A code (``B12``, ``KL-1234``) as one evidence token, or two or three adjacent ones."""
        needle = fold(text).replace(" ", "")
        for toks, e in self.tokens:
            for n in (1, 2, 3):
                if any("".join(toks[i:i + n]) == needle for i in range(len(toks) - n + 1)):
                    return e
        return None


def _fmt(v: Decimal) -> str:
    return format(v.normalize(), "f") if v == v.to_integral() else format(v, "f")


_COMPUTE = re.compile(
    r"\b(?:how (?:much|many) (?:more|less|fewer)|difference|sum|total|together|combined|altogether|in all|"
    r"each|per|times|twice|double|half|average|mean|plus|minus|add|subtract|multipl\w*|divid\w*|remain\w*|"
    r"left over|change|worth|cost of .+ and|price of .+ and|how much (?:do|does|did|would|will) .+ and .+|if)\b", re.IGNORECASE)


def asks_computation(question: str | None) -> bool:
    """Whether a question asks for arithmetic ("how much more", "together", "in total", "if ...")."""
    return bool(question and _COMPUTE.search(question))


def _computed(value: Decimal, index: _Index, question_numbers: Sequence[Decimal]) -> tuple[Evidence | None, str] | None:
    """``value`` as one arithmetic step over the evidence's and the question's numbers
    (``a + b``, ``a - b``, ``a x b``, ``a / b``), or ``q x a + b`` with ``q`` from the question
    ("two coffees and one muffin"); ``None`` when no such step gives it."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0 and abs(value) < MIN_COMPUTED:
        return None  # "5", not "5.00"
    places = max(0, -value.as_tuple().exponent) if isinstance(value.as_tuple().exponent, int) else 2
    quantum = Decimal(1).scaleb(-places)
    ev = [(v, e) for v, _, e in index.operands]
    seen: set[Decimal] = set()
    operands: list[tuple[Decimal, Evidence | None]] = []
    for v, e in [*ev, *((q, None) for q in question_numbers)]:
        if v not in seen:
            seen.add(v)
            operands.append((v, e))
    if len(operands) > 120:  # a page of numbers: any value would be "computed" by chance
        return None

    def same(x: Decimal) -> bool:
        return x.quantize(quantum) == value if abs(x) < Decimal(10) ** 12 else False

    for (a, ea), (b, eb) in itertools.permutations(operands, 2):
        # + - x are exact on decimals: the answer must equal the result; a quotient is rounded to
        # the answer's precision
        for symbol, result in (("+", a + b), ("-", a - b), ("x", a * b)):
            if result == value:
                return ea or eb, f"computed: {_fmt(a)} {symbol} {_fmt(b)}"
        if b and same(a / b):
            return ea or eb, f"computed: {_fmt(a)} / {_fmt(b)}"
    for q in question_numbers:
        for (a, ea), (b, eb) in itertools.permutations(ev, 2):
            if q * a + b == value:
                return ea or eb, f"computed: {_fmt(q)} x {_fmt(a)} + {_fmt(b)}"
    return None


def _check(span: Span, index: _Index, question_numbers: Sequence[Decimal],
           computing: bool) -> tuple[bool, Evidence | None, str | None]:
    if span.kind in ("number", "amount"):
        value, unit = span.value if span.kind == "amount" else (span.value, "")  # type: ignore[misc]
        assert isinstance(value, Decimal)
        for v, raw, e in index.numbers:
            if v == value:
                note = None if raw.strip() == span.text.strip(" $€£¥₹%") else f"read as '{raw}'"
                return True, e, note
        if computing and value in question_numbers:  # "two tickets" restated from "what would two tickets cost?"
            return True, None, "from the question"
        hit = _computed(value, index, question_numbers) if computing else None
        if hit is not None:
            return True, hit[0], hit[1]
        return False, None, None
    if span.kind == "time":
        for v, raw, e in index.times:
            if v & span.value:  # type: ignore[operator]
                return True, e, None if raw == span.text else f"read as '{raw}'"
        return False, None, None
    if span.kind == "date":
        for v, raw, e in index.dates:
            for (y1, m1, d1), (y2, m2, d2) in itertools.product(span.value, v):  # type: ignore[arg-type]
                if m1 == m2 and (y1 is None or y2 is None or y1 == y2) and (d1 is None or d2 is None or d1 == d2):
                    return True, e, None if raw == span.text else f"read as '{raw}'"
        return False, None, None
    if span.kind == "code":
        e = index.code(span.text)
        return e is not None, e, None
    e = index.phrase(span.text)  # names and quotes
    if e is None and span.kind == "name":  # "Latte and Croissant": two names, each seen
        parts = [p for p in re.split(r"\s+(?:and|&)\s+", span.text) if p]
        found = [index.phrase(p) for p in parts] if len(parts) > 1 else [None]
        if all(found):
            return True, found[0], None
    return e is not None, e, None


def _objects(answer: str, taken: list[tuple[int, int]], index: _Index) -> list[Fact]:
    """Object words the answer asserts (not negated), each checked against what the visual experts
    and the text saw (by vocabulary class: "puppy" is supported by "dog")."""
    from .vocab import default_vocabulary

    vocab = default_vocabulary()
    masked = list(answer)
    for a, b in taken:
        masked[a:b] = " " * (b - a)
    text = "".join(masked)
    seen: dict[str, Evidence] = {}
    for e in index.evidence:
        for cls in vocab.classes_in(e.text):
            seen.setdefault(cls, e)
    out: list[Fact] = []
    pos = 0
    for m in vocab.mentions(text):
        if m.negated:
            continue
        pattern = r"\b" + r"[\s-]+".join(re.escape(w) for w in m.surface.split()) + r"\b"
        hit = re.compile(pattern, re.IGNORECASE).search(text, pos)
        if hit is None:
            continue
        pos = hit.end()
        e = seen.get(m.canonical)
        out.append(Fact(text=answer[hit.start():hit.end()], start=hit.start(), end=hit.end(), kind="object",
                        supported=e is not None, evidence=e))
    return out


def question_numbers(question: str | None) -> list[Decimal]:
    """The numbers a question states ("two coffees", "worth 5 dollars"): operands of computed answers."""
    if not question:
        return []
    out: list[Decimal] = []
    for span in find_facts(question):
        if span.kind == "number" and isinstance(span.value, Decimal):
            out.append(span.value)
        elif span.kind == "amount":
            out.append(span.value[0])  # type: ignore[index]
    for word in re.findall(r"\b(one|a single)\b", question, re.IGNORECASE):
        out.append(Decimal(1))
    return out


def ground(answer: str, evidence: Sequence[Evidence], question: str | None = None, mode: Mode = "check",
           first_answer: str | None = None) -> Grounding:
    index = _Index(evidence)
    numbers = question_numbers(question)
    computing = asks_computation(question)
    facts: list[Fact] = []
    for span in find_facts(answer):
        ok, e, note = _check(span, index, numbers, computing)
        facts.append(Fact(text=span.text, start=span.start, end=span.end, kind=span.kind,  # type: ignore[arg-type]
                          supported=ok, evidence=e, note=note))
    visual = any(e.kind in VISUAL_KINDS for e in evidence)
    if visual:
        facts += _objects(answer, [(f.start, f.end) for f in facts], index)
        facts.sort(key=lambda f: f.start)
    return Grounding(mode=mode, facts=tuple(facts), objects_checked=visual, first_answer=first_answer)


__all__ = ["decimal", "fold", "ground", "question_numbers"]

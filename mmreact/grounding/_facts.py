"""Finding the checkable facts of an answer, and reading numbers, times and dates out of text.

Everything here is pure text work: no model, no I/O. Positions are character offsets into the
answer, so a view can mark the exact span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MONTHS = {m: i for i, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
    ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
    ("dec", "december")), start=1) for m in names}
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())} | {w: 10 * i for i, w in enumerate(
        "thirty forty fifty sixty seventy eighty ninety".split(), start=3)} | {"hundred": 100}
#: Number words that are facts when written in an answer ("one" is mostly not a number: "the one
#: on the left", "one of them").
_FACT_NUMBER_WORDS = sorted((w for w in NUMBER_WORDS if w not in ("zero", "one")), key=len, reverse=True)

_QUOTE = re.compile(r"\"([^\"\n]{2,200})\"|\u201c([^\u201d\n]{2,200})\u201d|(?<![\w'])'([^'\n]{2,200})'(?![\w'])")
_DATE = re.compile(
    rf"(?<!\w)(?:(\d{{4}})-(\d{{1,2}})-(\d{{1,2}})"                                 # 2024-03-05
    rf"|(\d{{1,2}})[/.](\d{{1,2}})[/.](\d{{2,4}})"                                  # 05/03/2024, 5.3.24
    rf"|({_MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?"                # March 5, 2024
    rf"|(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})(?:,?\s+(\d{{4}}))?"      # 5 March 2024
    rf"|({_MONTH})\s+(\d{{4}}))(?!\w)",                                             # March 2024
    re.IGNORECASE)
_TIME = re.compile(
    r"(?<![\w.:])(?:(\d{1,2})(?:[:.](\d{2}))?\s*([ap])\.?\s?m\b\.?"               # 7:30 PM, 9pm, 7.30 p.m.
    r"|(\d{1,2})[:h](\d{2})(?![\d:])"                                               # 14:35, 14h35
    r"|\b(noon|midday|midnight)\b)",
    re.IGNORECASE)
_CURRENCY = "$€£¥₹"
_AMOUNT = re.compile(
    rf"(?:([{_CURRENCY}])\s?(-?\d[\d,]*(?:\.\d+)?)|(-?\d[\d,]*(?:\.\d+)?)\s?(%|percent\b|per cent\b|dollars?\b|"
    rf"euros?\b|pounds?\b|cents?\b|usd\b|eur\b|gbp\b))", re.IGNORECASE)
_UNIT_SUFFIX = re.compile(r"^\d+(?:\.\d+)?(?:kg|g|mg|km|m|cm|mm|ml|l|lb|lbs|oz|mph|kmh|kph|h|hrs?|min|s|sec|px|x|"
                          r"k|gb|mb|kb|tb|am|pm|st|nd|rd|th|d|yr|yrs|in|ft)$", re.IGNORECASE)
_CODE = re.compile(r"(?<![\w$€£¥₹.])(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![\w])")
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])-?\d+(?:[.,]\d+)?(?![\w])")
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_FACT_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_CAP = r"[A-Z][\w'\u2019&.-]*"
_NAME = re.compile(rf"(?<![\w'])[A-Z][\w'\u2019&.-]*(?:(?:\s+(?:of|the|de|du|da|la|le|van|von|and|&))*\s+{_CAP})*")
#: Capitalised words that are not names when they start a phrase (sentence starts, function words).
NOT_NAMES = frozenset("""
a an the this that these those it its it's there here yes no not i i'm my our your his her their they we you he
she in on at of to for from by with and or but if then so as is are was were be been what which who whom where
when why how according based answer image images picture photo the total final maybe perhaps probably both
each every some any all none one first second third left right top bottom middle center centre
""".split())


@dataclass(frozen=True, slots=True)
class Span:
    """A fact candidate: where it is, its kind, and its parsed value."""

    start: int
    end: int
    kind: str
    text: str
    value: object = None


def decimal(text: str) -> Decimal | None:
    """``"1,234.50"`` -> 1234.50, ``"3,50"`` -> 3.50 (a decimal comma), ``"-7"`` -> -7."""
    t = text.replace("\u2212", "-").strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", t):
        t = t.replace(",", "")
    elif re.fullmatch(r"-?\d+,\d{1,2}", t):
        t = t.replace(",", ".")
    try:
        return Decimal(t)
    except InvalidOperation:
        return None


# -- times and dates -------------------------------------------------------------------------
def time_values(m: re.Match[str]) -> frozenset[tuple[int, int]]:
    """Every (hour 0-23, minute) a matched time can mean ("7:30" with no AM/PM: 7:30 or 19:30)."""
    if m.group(6):
        return frozenset({(12, 0)} if m.group(6).lower() in ("noon", "midday") else {(0, 0)})
    if m.group(3):
        h, mi = int(m.group(1)), int(m.group(2) or 0)
        if not (1 <= h <= 12 and mi < 60):
            return frozenset()
        return frozenset({(h % 12 + (12 if m.group(3).lower() == "p" else 0), mi)})
    h, mi = int(m.group(4)), int(m.group(5))
    if h > 23 or mi > 59:
        return frozenset()
    return frozenset({(h, mi), ((h + 12) % 24, mi)} if 1 <= h <= 12 else {(h, mi)})


def _year(text: str | None) -> int | None:
    if not text:
        return None
    y = int(text)
    return y + 2000 if y < 100 else y


def date_values(m: re.Match[str]) -> frozenset[tuple[int | None, int, int | None]]:
    """Every (year or None, month, day or None) a matched date can mean (03/05 is 3 May or 5 March)."""
    g = m.groups()
    out: set[tuple[int | None, int, int | None]] = set()
    if g[0]:
        out.add((int(g[0]), int(g[1]), int(g[2])))
    elif g[3]:
        a, b, y = int(g[3]), int(g[4]), _year(g[5])
        out |= {(y, a, b), (y, b, a)}
    elif g[6]:
        out.add((_year(g[8]), MONTHS[g[6].lower().rstrip(".")], int(g[7])))
    elif g[9]:
        out.add((_year(g[11]), MONTHS[g[10].lower().rstrip(".")], int(g[9])))
    elif g[12]:
        out.add((int(g[13]), MONTHS[g[12].lower().rstrip(".")], None))
    return frozenset(v for v in out if 1 <= v[1] <= 12 and (v[2] is None or 1 <= v[2] <= 31))


# -- reading evidence text ---------------------------------------------------------------------
_EV_NUMBER = re.compile(r"(?<![\d.,])[0-9OolI|]*\d[0-9OolI|]*(?:[.,][0-9OolI|]*\d[0-9OolI|]*)*(?![\d])")
_OCR_DIGITS = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1"})
_EV_DOT_TIME = re.compile(r"(?<![\w.])(\d{1,2})\.(\d{2})(?![\w.])")


def numbers_in(text: str) -> list[tuple[Decimal, str]]:
    """Every number an expert's text holds, with the text it was read from.

    Digit groups that OCR confused with letters inside them (``1O.50``, ``l2``) are read as digits;
    a time ``14:35`` also reads as the number 14.35 (``:`` and ``.`` are mixed up).
    """
    out: list[tuple[Decimal, str]] = []
    for m in _EV_NUMBER.finditer(text):
        raw = m.group(0)
        start, end = m.span()
        if (start and text[start - 1].isalpha() and raw[0] in "OolI|") or (end < len(text) and text[end].isalpha()
                                                                             and raw[-1] in "OolI|"):
            raw = raw.strip("OolI|")  # a letter run touching a word ("Total" -> not 7071)
        if not any(c.isdigit() for c in raw):
            continue
        value = decimal(raw.translate(_OCR_DIGITS))
        if value is not None:
            out.append((value, m.group(0)))
        for part in re.split(r"[.,]", raw.translate(_OCR_DIGITS)) if re.search(r"\d[.,]\d{3}", raw) else ():
            if part and (v := decimal(part)) is not None:
                out.append((v, part))
    for m in _TIME.finditer(text):
        if m.group(4):
            out.append((Decimal(f"{int(m.group(4))}.{m.group(5)}"), m.group(0)))
    return out


def times_in(text: str) -> list[tuple[frozenset[tuple[int, int]], str]]:
    """Every time an expert's text holds; ``14.35`` counts too (OCR reads ``:`` as ``.``)."""
    out = [(v, m.group(0)) for m in _TIME.finditer(text) if (v := time_values(m))]
    for m in _EV_DOT_TIME.finditer(text):
        h, mi = int(m.group(1)), int(m.group(2))
        if h <= 23 and mi <= 59:
            out.append((frozenset({(h, mi), ((h + 12) % 24, mi)} if 1 <= h <= 12 else {(h, mi)}), m.group(0)))
    return out


def dates_in(text: str) -> list[tuple[frozenset[tuple[int | None, int, int | None]], str]]:
    return [(v, m.group(0)) for m in _DATE.finditer(text) if (v := date_values(m))]


# -- finding facts in an answer ---------------------------------------------------------------
def _free(taken: list[tuple[int, int]], start: int, end: int) -> bool:
    return all(end <= a or start >= b for a, b in taken)


def _sentence_start(text: str, i: int) -> bool:
    before = text[:i].rstrip(" \t\"'(\u201c")
    return not before or before[-1] in ".!?:\n;"


def find_facts(answer: str) -> list[Span]:
    """The checkable facts of ``answer``, most specific first, never overlapping (a date's digits
    are not also numbers); sorted by position. Object words are found separately (they need the
    vocabulary)."""
    taken: list[tuple[int, int]] = []
    out: list[Span] = []

    def add(start: int, end: int, kind: str, value: object = None) -> None:
        text = answer[start:end]
        stripped = text.rstrip(" .,;:")
        end -= len(text) - len(stripped)
        if end > start and _free(taken, start, end):
            taken.append((start, end))
            out.append(Span(start, end, kind, answer[start:end], value))

    for m in _QUOTE.finditer(answer):
        g = next(i for i in (1, 2, 3) if m.group(i))
        add(m.start(g), m.end(g), "quote")
    for m in _DATE.finditer(answer):
        if (v := date_values(m)):
            add(m.start(), m.end(), "date", v)
    for m in _TIME.finditer(answer):
        if (v := time_values(m)):
            add(m.start(), m.end(), "time", v)
    for m in _AMOUNT.finditer(answer):
        number = m.group(2) or m.group(3)
        unit = (m.group(1) or m.group(4) or "").lower()
        value = decimal(number)
        if value is not None:
            add(m.start(), m.end(), "amount", (value, unit))
    for m in _CODE.finditer(answer):
        if _UNIT_SUFFIX.match(m.group(0)):
            continue
        add(m.start(), m.end(), "code", m.group(0))
    for m in _NUMBER.finditer(answer):
        value = decimal(m.group(0))
        if value is not None:
            add(m.start(), m.end(), "number", value)
    for m in _NUMBER_WORD.finditer(answer):
        add(m.start(), m.end(), "number", Decimal(NUMBER_WORDS[m.group(1).lower()]))
    words = len(answer.split())
    for m in _NAME.finditer(answer):
        start, text = m.start(), m.group(0)
        parts = text.split()
        while parts and parts[0].lower().strip(".,") in NOT_NAMES:  # "The Quiet River" -> "Quiet River"
            start = answer.index(parts[1], start + len(parts[0])) if len(parts) > 1 else m.end()
            parts = parts[1:]
        while parts and parts[-1].lower().strip(".,") in NOT_NAMES:
            parts = parts[:-1]
        if not parts:
            continue
        name = " ".join(parts)
        end = answer.index(parts[-1], start) + len(parts[-1])
        single = len(parts) == 1
        if single and len(name.strip(".,")) < 2:
            continue
        if single and _sentence_start(answer, start) and not name.isupper() and words > 2:
            continue  # a capital that only starts a sentence
        add(start, end, "name", name)
    out.sort(key=lambda s: s.start)
    return out

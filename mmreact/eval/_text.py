"""Reading predictions the way the rule-based scorers need: words, numbers, negation, hedges, options.

A text is split into *tokens*: words, numbers, symbols (``$ % °`` ...) and clause breaks
(punctuation that ends a clause, and the words "but", "however", "rather", "instead", "whereas",
"although", "though"). The scorers then look at the normalised words (:func:`normalize`) and at
each occurrence's neighbourhood inside its clause.

Decisions (each one is tested in ``tests/test_scorers.py``):

* **Normalisation** lower-cases (NFKC), turns number words into digits ("twenty-one" -> 21),
  contractions into words ("isn't" -> "is not"), times into one form ("6:00 p.m." -> "6 pm"),
  drops punctuation, thousands separators, the articles a/an/the and trailing zeros of decimals
  ("7.50" -> "7.5"); a minus sign before a number is kept ("-5" is not "5").
* **Negation.** An occurrence preceded, within its clause and at most three words before it, by
  not / no / never / nor / neither / none / without / nothing / nobody is negated: "it is not a
  cat" does not name a cat ("no doubt", "not only" and "not just" are not negations). Negated
  occurrences never earn credit.
* **Hedges.** An occurrence joined to another by "or" ("left or right", "24 or 25") is a hedge
  and earns no credit: the prediction did not choose. Not so for the parts of an ``<AND>``
  answer, which a prediction lists ("x = -1 or x = -5" for "-1 <AND> -5").
* **Yes and no** as answers or options count only where they stand at the start or end of a
  clause ("No, you may not", "I would say yes"), not inside one ("there is no sign").
* **Options.** An option is *named* when it occurs without negation (hedged mentions count as
  named); an occurrence inside a longer named option's occurrence ("left" inside "top left")
  does not count.
* **Copied observation lines.** A pixel box ``[x1, y1, x2, y2]`` in a prediction means the
  model copied a tool's observation line (``8 AM 6 PM [65, 253, 335, 295]``) instead of answering;
  which part is its answer cannot be told, so the scorers reject it (see :func:`holds_box`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ARTICLES = frozenset({"a", "an", "the"})
NEGATIONS = frozenset({"not", "no", "never", "nor", "neither", "none", "without", "nothing", "nobody"})
#: (negation word, next word) pairs that do not negate what follows.
NOT_NEGATING = frozenset({("no", "doubt"), ("not", "only"), ("not", "just"), ("no", "matter")})
BREAK_WORDS = frozenset({"but", "however", "rather", "instead", "whereas", "although", "though"})
#: How many words may stand between a negation and what it negates.
NEGATION_REACH = 3
#: How many words may stand between "or" and a hedged occurrence after it ("or to the right").
HEDGE_REACH = 2

_UNITS_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_NUMBER_WORDS = set(_UNITS_WORDS) | set(_TENS)

#: Unit and currency words -> one name per unit, so "$7.75" and "7.75 dollars" agree and
#: "40 mph" and "40 km/h" do not. Symbols are tokens of their own.
UNITS: dict[str, str] = {}
for _name, _words in {
    "usd": "$ dollar dollars usd", "eur": "€ euro euros eur", "gbp": "£ gbp pound pounds", "jpy": "¥ yen jpy",
    "cent": "¢ cent cents", "km": "km kilometer kilometers kilometre kilometres", "m": "m meter meters metre metres",
    "cm": "cm centimeter centimeters centimetre centimetres", "mm": "mm millimeter millimeters",
    "mi": "mi mile miles", "ft": "ft foot feet", "kg": "kg kilogram kilograms kilo kilos", "g": "g gram grams",
    "lb": "lb lbs", "kph": "kph kmh", "mph": "mph", "h": "h hr hrs hour hours", "min": "min mins minute minutes",
    "s": "s sec secs second seconds", "day": "day days", "week": "week weeks", "month": "month months",
    "year": "year years yr yrs", "°c": "celsius", "°f": "fahrenheit", "degree": "° degree degrees",
}.items():
    for _w in _words.split():
        UNITS[_w] = _name
#: Count nouns that may follow a numeric answer ("24 items") without making it text.
COUNT_WORDS = frozenset({"items", "item", "units", "people", "persons", "times"})

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TIME = re.compile(r"\b(\d{1,2})(?::00)?\s*([ap])\.?\s?m\b\.?")
_CONTRACTIONS = ((re.compile(r"\bcan't\b|\bcannot\b"), "can not"), (re.compile(r"\bwon't\b"), "will not"),
                 (re.compile(r"n't\b"), " not"))
_SCAN = re.compile(
    r"(?P<num>(?:(?<![\w.])[-−])?(?:\d+(?:\.\d+)?|\.\d+))(?!\w)"
    r"|(?P<word>\w+)"
    r"|(?P<sym>[%$€£¥¢°])"
    r"|(?P<brk>[,;:!?()\[\]{}\n|]|\.(?!\d)|\s[-–—]\s)"
)
BOX = re.compile(r"\[\s*-?\d+(?:\.\d+)?\s*(?:,\s*-?\d+(?:\.\d+)?\s*){3}\]")


# -- number words ----------------------------------------------------------------------------
def _number_run(words: Sequence[str], i: int) -> tuple[int, int]:
    """Parse number words from ``words[i]``; return (value, index after the last word used)."""
    total = current = 0
    last: str | None = None
    end = j = i
    while j < len(words):
        w = words[j]
        if w in _UNITS_WORDS and last not in ("unit",) and not (last == "tens" and _UNITS_WORDS[w] >= 10):
            current += _UNITS_WORDS[w]
            last = "unit"
        elif w in _TENS and last not in ("unit", "tens"):
            current += _TENS[w]
            last = "tens"
        elif w == "hundred" and last == "unit" and current < 10:
            current *= 100
            last = "hundred"
        elif w in SCALES and last in ("unit", "tens", "hundred"):
            total += current * SCALES[w]
            current = 0
            last = "scale"
        elif w == "and" and last in ("hundred", "scale") and j + 1 < len(words) and words[j + 1] in _NUMBER_WORDS:
            last = "and"
        else:
            break
        j += 1
        if last != "and":
            end = j
    return total + current, end


def words_to_digits(text: str) -> str:
    """Replace runs of English number words with digits: "twenty-one" -> "21"."""
    chunks = re.findall(r"[a-z]+|[^a-z]+", text)
    out: list[str] = []
    k = 0
    while k < len(chunks):
        if chunks[k] in _NUMBER_WORDS:
            idx = [k]  # alphabetic chunks joined only by spaces or hyphens
            m = k + 1
            while m + 1 < len(chunks) and re.fullmatch(r"[\s-]+", chunks[m]) and chunks[m + 1].isalpha():
                idx.append(m + 1)
                m += 2
            value, used = _number_run([chunks[x] for x in idx], 0)
            out.append(str(value))
            k = idx[used - 1] + 1
        else:
            out.append(chunks[k])
            k += 1
    return "".join(out)


def _canonical_number(token: str) -> str:
    token = token.replace("−", "-")
    if re.fullmatch(r"-?\d*\.\d+", token):
        token = token.rstrip("0").rstrip(".")
    return token if token not in ("", "-") else "0"


# -- tokens ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Token:
    text: str
    kind: str  # "word", "num", "sym" or "brk"


@dataclass(frozen=True)
class Text:
    """A text read once: its tokens, its normalised words (no articles) and its clause breaks."""

    raw: str
    tokens: tuple[Token, ...]
    words: tuple[str, ...]
    #: For each word, its index in ``tokens``.
    where: tuple[int, ...]
    #: ``breaks[i]``: a clause break lies between ``words[i - 1]`` and ``words[i]`` (``breaks[0]`` is True).
    breaks: tuple[bool, ...]
    #: The words joined by spaces: what :func:`normalize` returns.
    normalized: str


def read(text: str) -> Text:
    """Tokenise ``text`` (see the module's decisions)."""
    t = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    for pattern, repl in _CONTRACTIONS:
        t = pattern.sub(repl, t)
    t = words_to_digits(t)
    t = _THOUSANDS.sub("", t)
    t = _TIME.sub(r"\1 \2m", t)
    tokens: list[Token] = []
    for m in _SCAN.finditer(t):
        kind = m.lastgroup or "brk"
        if kind == "word" and m.group() in BREAK_WORDS:
            tokens.append(Token("", "brk"))
        if kind == "num":
            tokens.append(Token(_canonical_number(m.group()), "num"))
        else:
            tokens.append(Token(m.group().strip() if kind == "brk" else m.group(), kind))
    words: list[str] = []
    where: list[int] = []
    breaks: list[bool] = []
    pending = True
    for i, tok in enumerate(tokens):
        if tok.kind == "brk":
            pending = True
        elif tok.kind in ("word", "num") and tok.text not in ARTICLES:
            words.append(tok.text)
            where.append(i)
            breaks.append(pending)
            pending = False
    return Text(raw=text, tokens=tuple(tokens), words=tuple(words), where=tuple(where), breaks=tuple(breaks),
                normalized=" ".join(words))


def normalize(text: str) -> str:
    """Lower-case; number words -> digits; drop punctuation, articles and extra spaces."""
    return read(text).normalized


def as_text(text: str | Text) -> Text:
    return text if isinstance(text, Text) else read(text)


# -- where a phrase occurs, and how --------------------------------------------------------------
def _standalone(t: Text, start: int, end: int) -> bool:
    """The span is the first or the last thing in its clause."""
    return t.breaks[start] or end == len(t.words) or t.breaks[end]


def negated(t: Text, start: int) -> bool:
    """A negation word stands at most :data:`NEGATION_REACH` words before ``start``, in its clause."""
    j = start
    for _ in range(NEGATION_REACH + 1):
        if j == 0 or t.breaks[j]:
            return False
        k = j - 1
        nxt = t.words[k + 1] if k + 1 < len(t.words) else ""
        if t.words[k] in NEGATIONS and (t.words[k], nxt) not in NOT_NEGATING:
            return True
        j = k
    return False


def hedged(t: Text, start: int, end: int) -> bool:
    """The span is one side of an "or": "or" right after it, or up to :data:`HEDGE_REACH` words before it."""
    if end < len(t.words) and not t.breaks[end] and t.words[end] == "or":
        return True
    j = start
    for _ in range(HEDGE_REACH + 1):
        if j == 0 or t.breaks[j]:
            return False
        if t.words[j - 1] == "or":
            return True
        j -= 1
    return False


def spans(t: Text, phrase: Sequence[str]) -> list[tuple[int, int]]:
    """Every (start, end) where the words of ``phrase`` occur in ``t`` (yes/no: standalone only)."""
    n = len(phrase)
    if not n or n > len(t.words):
        return []
    out = [(i, i + n) for i in range(len(t.words) - n + 1) if tuple(t.words[i:i + n]) == tuple(phrase)]
    if tuple(phrase) in (("yes",), ("no",)):
        out = [(s, e) for s, e in out if _standalone(t, s, e)]
    return out


def affirmed(t: Text, phrase: str | Text, *, hedges: bool = True) -> bool:
    """``phrase`` occurs in ``t`` at least once not negated and (with ``hedges``) not hedged."""
    words = as_text(phrase).words
    return any(not negated(t, s) and not (hedges and hedged(t, s, e)) for s, e in spans(t, words))


def named_options(t: Text, options: dict[str, str]) -> set[str]:
    """The keys of the options ``t`` names (not negated; an occurrence inside a longer named one does not count)."""
    found: list[tuple[int, int, str]] = []
    for key, option in options.items():
        words = read(option).words
        found += [(s, e, key) for s, e in spans(t, words) if not negated(t, s)]
    named = set()
    for s, e, key in found:
        if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in found):
            named.add(key)
    return named


def holds_box(text: str) -> bool:
    """``text`` holds a pixel box ``[x1, y1, x2, y2]``, as expert observations write them."""
    return BOX.search(text) is not None


# -- numbers -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Number:
    value: float
    percent: bool = False
    #: The unit's name (see :data:`UNITS`), or ``None``.
    unit: str | None = None
    negated: bool = False
    hedged: bool = False


CURRENCIES = frozenset({"usd", "eur", "gbp", "jpy"})


def _unit_after(tokens: Sequence[Token], i: int) -> str | None:
    """The unit written at ``tokens[i]`` ("km", "km/h", "kilometres per hour", "°C" ...), or ``None``."""
    if i >= len(tokens):
        return None
    tok = tokens[i]
    nxt = [x.text for x in tokens[i + 1:i + 3] if x.kind == "word"]
    if tok.kind == "sym" and tok.text == "°":
        return {"c": "°c", "f": "°f"}.get(nxt[0] if nxt else "", "degree")
    if tok.kind not in ("word", "sym") or tok.text not in UNITS:
        return None
    unit = UNITS[tok.text]
    if unit in ("km", "mi") and (nxt[:1] == ["h"] or nxt[:2] == ["per", "hour"]):
        return "kph" if unit == "km" else "mph"
    return unit


def numbers(text: str | Text) -> list[Number]:
    """The numbers of ``text`` in order, with percent signs, scales, currencies and units read."""
    t = as_text(text)
    out = []
    for w, ti in enumerate(t.where):
        tok = t.tokens[ti]
        if tok.kind != "num":
            continue
        value = float(tok.text)
        before = t.tokens[ti - 1].text if ti > 0 else ""
        unit = UNITS[before] if UNITS.get(before) in CURRENCIES else None
        j = ti + 1
        nxt = t.tokens[j].text if j < len(t.tokens) else ""
        percent = False
        if nxt in ("%", "percent"):
            percent, j = True, j + 1
        elif nxt == "per" and j + 1 < len(t.tokens) and t.tokens[j + 1].text == "cent":
            percent, j = True, j + 2
        elif nxt in SCALES:
            value *= SCALES[nxt]
            j += 1
        out.append(Number(value, percent, unit or _unit_after(t.tokens, j), negated(t, w), hedged(t, w, w + 1)))
    return out


def is_numeric_answer(answer: str) -> bool:
    """True when the answer is one number, optionally with currency or a unit ("$7.75", "40 mph")."""
    toks = [x for x in read(answer).tokens if x.kind != "brk" and x.text not in ARTICLES]
    nums = [i for i, x in enumerate(toks) if x.kind == "num"]
    if len(nums) != 1:
        return False
    i = nums[0]
    if any(UNITS.get(x.text) not in CURRENCIES for x in toks[:i]):
        return False
    rest = [x.text for x in toks[i + 1:]]
    if rest[:1] in (["%"], ["percent"]) or rest[:1] and rest[0] in SCALES:
        rest = rest[1:]
    elif rest[:2] == ["per", "cent"]:
        rest = rest[2:]
    if not rest:
        return True
    allowed = set(UNITS) | COUNT_WORDS | {"per", "c", "f", "/"}
    return len(rest) <= 3 and all(w in allowed for w in rest)


def candidates(n: Number) -> set[float]:
    """Values a number may stand for: "45%" is 45 or 0.45."""
    return {n.value, n.value / 100} if n.percent else {n.value}


def compatible_units(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def split_alternatives(answers: Iterable[str]) -> list[str]:
    """Answers as alternatives: MM-Vet's ``<OR>`` inside one answer string splits it further."""
    return [p.strip() for a in answers for p in a.split("<OR>") if p.strip()]


def split_parts(answer: str) -> list[str]:
    """The parts of one answer joined by ``<AND>``, all of which must be present."""
    return [p.strip() for p in answer.split("<AND>") if p.strip()]

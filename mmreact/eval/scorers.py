"""Scorers: ``score(prediction, answers, item) -> float in [0, 1]``.

``answers`` are alternatives (matching any one is enough). Inside one answer, ``<AND>`` joins
parts that must all be present; the credit is the fraction present (MM-Vet's convention).

==================  ===========================================================================
name                rule
==================  ===========================================================================
``exact``           normalised texts are equal (see :func:`normalize`)
``contains``        a normalised answer occurs, as whole words, in the normalised prediction
``numeric[:TOL]``   a number in the prediction (its first or last) equals the answer's number
                    within a relative tolerance (default 0.001) or an absolute one of 1e-9;
                    currency, units, thousands separators and percentages are understood
``choice``          the option letter the prediction picks (``B``, ``(B)``, ``answer: B``) or
                    the one option whose text it contains, against the answer's letter or text
``judge[:LLMSPEC]`` an LLM grades 0.0-1.0 with MM-Vet's few-shot prompt (any mmreact LLM)
``default``         ``numeric`` when the answer is a number (optionally with a unit), else
                    the better of ``exact`` and ``contains``
==================  ===========================================================================

Decisions: normalisation lower-cases, turns number words into digits ("twenty-one" -> 21),
drops punctuation (keeping decimal points and dropping thousands separators), the articles
a/an/the, and trailing zeros of decimals ("7.50" -> "7.5"). The numeric scorer looks only at
the first and the last number of the prediction, so "6 coins in each of 4 rows, 24 in all"
scores for 24, while a list of guesses in the middle earns nothing.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MMReactError

if TYPE_CHECKING:
    from ..llms.base import LLM
    from .dataset import EvalItem

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_ARTICLES = {"a", "an", "the"}
_NUMBER_WORDS = set(_UNITS) | set(_TENS)
UNIT_WORDS = {
    "%", "percent", "dollar", "dollars", "usd", "euro", "euros", "eur", "pound", "pounds", "gbp", "cent",
    "cents", "yen", "km", "kilometers", "kilometres", "m", "meters", "metres", "cm", "mm", "mi", "miles", "kg",
    "g", "grams", "lb", "lbs", "kph", "mph", "km/h", "h", "hours", "min", "minutes", "s", "seconds", "years",
    "year", "days", "items", "item", "units", "people", "persons", "times", "degrees", "°", "°c", "°f",
}
_NUM_RE = re.compile(
    r"(?<![\w.])(-|−)?\s?[$€£¥]?\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+)(?!\d)"
    r"(\s?(?:%|percent\b|per cent\b))?(\s?(?:thousand|million|billion)\b)?"
)


class ScoreError(MMReactError, ValueError):
    """A scorer could not produce a score (e.g. the judge's reply held no number)."""


# -- normalisation -----------------------------------------------------------------------------
def _number_run(words: Sequence[str], i: int) -> tuple[int, int]:
    """Parse number words from ``words[i]``; return (value, index after the last word used)."""
    total = current = 0
    last: str | None = None
    end = j = i
    while j < len(words):
        w = words[j]
        if w in _UNITS and last not in ("unit",) and not (last == "tens" and _UNITS[w] >= 10):
            current += _UNITS[w]
            last = "unit"
        elif w in _TENS and last not in ("unit", "tens"):
            current += _TENS[w]
            last = "tens"
        elif w == "hundred" and last == "unit" and current < 10:
            current *= 100
            last = "hundred"
        elif w in _SCALES and last in ("unit", "tens", "hundred"):
            total += current * _SCALES[w]
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
            # gather alphabetic chunks joined only by spaces or hyphens
            idx = [k]
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
    if re.fullmatch(r"\d+\.\d+", token):
        token = token.rstrip("0").rstrip(".")
    return token


def normalize(text: str) -> str:
    """Lower-case; number words -> digits; drop punctuation, articles and extra spaces."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = words_to_digits(t)
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    t = re.sub(r"[^\w\s.]", " ", t)
    return " ".join(_canonical_number(w) for w in t.split() if w not in _ARTICLES)


def numbers(text: str) -> list[tuple[float, bool]]:
    """Numbers in ``text`` in order, as (value, written_as_percentage)."""
    t = words_to_digits(unicodedata.normalize("NFKC", text).lower())
    out = []
    for m in _NUM_RE.finditer(t):
        value = float(m.group(2).replace(",", ""))
        if m.group(1):
            value = -value
        if m.group(4):
            value *= _SCALES[m.group(4).strip()]
        out.append((value, bool(m.group(3))))
    return out


def _candidates(value: float, percent: bool) -> set[float]:
    return {value, value / 100} if percent else {value}


def is_numeric_answer(answer: str) -> bool:
    """True when the answer is one number, optionally with currency or a unit ("$7.75", "40 mph")."""
    t = words_to_digits(unicodedata.normalize("NFKC", answer).lower()).strip()
    m = _NUM_RE.search(t)
    if m is None or t[: m.start()].strip() not in ("", "$", "€", "£", "¥"):
        return False
    rest = t[m.end():].strip().rstrip(".")
    return rest == "" or rest in UNIT_WORDS


def _parts(answer: str) -> list[str]:
    return [p.strip() for p in answer.split("<AND>") if p.strip()]


def _contains(pred_norm: str, answer: str) -> bool:
    a = normalize(answer)
    return bool(a) and f" {a} " in f" {pred_norm} "


# -- scorers -----------------------------------------------------------------------------------
class Scorer:
    """Base class: ``score(prediction, answers, item)`` returns a float in [0, 1]."""

    name = "scorer"

    def score(self, prediction: str | None, answers: Sequence[str], item: EvalItem | None = None) -> float:
        if prediction is None or not prediction.strip():
            return 0.0
        best = 0.0
        for answer in answers:
            parts = _parts(answer)
            if len(parts) > 1:
                value = sum(self._part(prediction, p, item, several=True) for p in parts) / len(parts)
            else:
                value = self._part(prediction, answer, item, several=False)
            best = max(best, value)
            if best >= 1.0:
                break
        return min(max(best, 0.0), 1.0)

    __call__ = score

    def _part(self, prediction: str, answer: str, item: EvalItem | None, several: bool) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<scorer {self.name}>"


class ExactScorer(Scorer):
    """Normalised equality; ``<AND>`` parts are looked for as contained words instead."""

    name = "exact"

    def _part(self, prediction: str, answer: str, item: EvalItem | None, several: bool) -> float:
        if several:
            return float(_contains(normalize(prediction), answer))
        return float(normalize(prediction) == normalize(answer) != "")


class ContainsScorer(Scorer):
    """A normalised answer occurs as whole words in the normalised prediction."""

    name = "contains"

    def _part(self, prediction: str, answer: str, item: EvalItem | None, several: bool) -> float:
        return float(_contains(normalize(prediction), answer))


class NumericScorer(Scorer):
    """The first or last number of the prediction matches the answer's number within tolerance."""

    name = "numeric"

    def __init__(self, rel_tol: float = 1e-3, abs_tol: float = 1e-9) -> None:
        if rel_tol < 0 or abs_tol < 0:
            raise ConfigError("Numeric tolerances must be 0 or more.")
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def _part(self, prediction: str, answer: str, item: EvalItem | None, several: bool) -> float:
        target = numbers(answer)
        if not target:  # a non-numeric answer among numeric ones: compare as text
            return max(ExactScorer()._part(prediction, answer, item, several),
                       ContainsScorer()._part(prediction, answer, item, several))
        found = numbers(prediction)
        if not found:
            return 0.0
        picked = found if several else [found[0], found[-1]]
        wanted = _candidates(*target[0])
        return float(any(math.isclose(p, w, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
                         for f in picked for p in _candidates(*f) for w in wanted))


class DefaultScorer(Scorer):
    """Numeric for numeric answers, else the better of exact and contains."""

    name = "default"

    def __init__(self) -> None:
        self.numeric = NumericScorer()

    def _part(self, prediction: str, answer: str, item: EvalItem | None, several: bool) -> float:
        if is_numeric_answer(answer):
            return self.numeric._part(prediction, answer, item, several)
        return float(_contains(normalize(prediction), answer) or normalize(prediction) == normalize(answer) != "")


_LETTER_ONLY = re.compile(r"^\s*\(?([A-Ha-h])\)?\s*[.):]?\s*$")
_PAREN_LETTER = re.compile(r"\(([A-H])\)")
_KEYWORD_LETTER = re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*\(?([A-H])\b(?!['\w])")
_LEADING_LETTER = re.compile(r"^\s*\(?([A-H])(?:\)|\.|:)\s")


def parse_options(question: str) -> dict[str, str]:
    """Options written in a question as ``(A) text (B) text`` or on lines ``A. text``."""
    marks = list(_PAREN_LETTER.finditer(question))
    if len(marks) < 2:
        marks = list(re.finditer(r"(?m)^\s*([A-H])[.):]\s+", question))
    if len(marks) < 2:
        return {}
    options = {}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(question)
        text = question[m.end():end].strip()
        text = re.sub(r"(?i)[\s,;]*(?:\bor\b)?[\s,;?.]*$", "", text).strip()
        if text:
            options[m.group(1)] = text
    return options


class ChoiceScorer(Scorer):
    """Multiple choice: the option the prediction picks, by letter or by option text."""

    name = "choice"

    @staticmethod
    def options(item: EvalItem | None) -> dict[str, str]:
        if item is None:
            return {}
        if item.choices:
            return {chr(ord("A") + i): c for i, c in enumerate(item.choices)}
        return parse_options(item.question)

    @staticmethod
    def picked(prediction: str, options: dict[str, str]) -> str | None:
        for pattern in (_LETTER_ONLY, _PAREN_LETTER, _KEYWORD_LETTER, _LEADING_LETTER):
            m = pattern.search(prediction)
            if m and (not options or m.group(1).upper() in options):
                return m.group(1).upper()
        pred = normalize(prediction)
        hits = [(len(normalize(t)), k) for k, t in options.items() if _contains(pred, t)]
        if not hits:
            return None
        hits.sort(reverse=True)
        if len(hits) > 1 and hits[0][0] == hits[1][0]:
            return None  # two options of equal length named: ambiguous
        return hits[0][1]

    def _part(self, prediction: str, answer: str, item: EvalItem | None, several: bool) -> float:
        options = self.options(item)
        m = _LETTER_ONLY.match(answer)
        target = m.group(1).upper() if m else next(
            (k for k, t in options.items() if normalize(t) == normalize(answer)), None)
        if target is None:  # the answer is not one of the options: compare texts
            return DefaultScorer()._part(prediction, answer, item, several)
        return float(self.picked(prediction, options) == target)


JUDGE_PROMPT = """\
Compare the ground truth and the prediction from an AI model, and give a correctness score for \
the prediction. <AND> in the ground truth means the prediction is fully right only when every \
element joined by <AND> is present; <OR> means that any one element is enough. The correctness \
score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 or 1.0 (totally right). \
Reply with the score only: complete the last row of the table.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
How many coins are there? | 24 | There are 24 coins. | 1.0
How many coins are there? | 24 | I can see about 20 coins. | 0.0
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
What colour is the car? | red <OR> dark red | The car is maroon. | 0.8
Describe the picture. | A cat asleep on a sofa beside a window. | A cat lying on a couch. | 0.7
Describe the picture. | A cat asleep on a sofa beside a window. | A dog running on grass. | 0.0
{question} | {truth} | {prediction} | """

_SCORE_RE = re.compile(r"(?<![\w.\-−])(\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?)|\s*(%))?")


def parse_judge_score(text: str) -> float | None:
    """The 0-1 score in a judge's reply ("0.7", "Score: 0.7", "7/10", "70%"), else ``None``."""
    text = re.sub(r"(?i)(\d+(?:\.\d+)?)\s*out\s+of\s+(\d+(?:\.\d+)?)", r"\1/\2", text)
    text = re.sub(r"(?i)\bout\s+of\s+\d+(?:\.\d+)?", " ", text)  # "(out of 1)" with no score before it
    labelled = re.search(r"(?i)(?:score|correctness|rating)\s*(?:is|of)?\s*[:=]?\s*", text)
    spans = [text[labelled.end():]] if labelled else []
    for chunk in [*spans, text]:
        m = _SCORE_RE.search(chunk)
        if not m:
            continue
        value = float(m.group(1))
        if m.group(2):
            denominator = float(m.group(2))
            value = value / denominator if denominator > 0 else -1.0
        elif m.group(3):
            value /= 100
        if 0.0 <= value <= 1.0:
            return value
    return None


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


class JudgeScorer(Scorer):
    """An LLM grades the prediction 0.0-1.0, few-shot, in MM-Vet's style.

    Unparseable replies are retried ``retries`` times; after that :class:`ScoreError` is raised
    (the runner records the item as ``score_error`` rather than silently scoring 0).
    """

    name = "judge"

    def __init__(self, llm: LLM | str | None = None, retries: int = 2, max_tokens: int = 16) -> None:
        from ..llms import load_llm

        self.llm = load_llm(llm)
        self.retries = retries
        self.max_tokens = max_tokens
        self.name = f"judge:{self.llm.name}"

    def prompt(self, prediction: str, answers: Sequence[str], item: EvalItem | None) -> str:
        question = item.question if item is not None else ""
        return JUDGE_PROMPT.format(question=_cell(question), truth=_cell(" <OR> ".join(answers)),
                                   prediction=_cell(prediction))

    def score(self, prediction: str | None, answers: Sequence[str], item: EvalItem | None = None) -> float:
        from ..llms.base import LLMRequest, Message

        if prediction is None or not prediction.strip():
            return 0.0
        request = LLMRequest(messages=(Message("user", self.prompt(prediction, answers, item)),),
                             max_tokens=self.max_tokens, stop=("\n\n",))
        reply = ""
        for _ in range(self.retries + 1):
            reply = self.llm.complete(request).text or ""
            value = parse_judge_score(reply)
            if value is not None:
                return value
        raise ScoreError(f"The judge's reply held no score between 0 and 1: {_cell(reply)[:120]!r}.")

    __call__ = score


SCORERS: dict[str, type[Scorer]] = {
    "default": DefaultScorer, "exact": ExactScorer, "contains": ContainsScorer, "numeric": NumericScorer,
    "choice": ChoiceScorer, "judge": JudgeScorer,
}
_judges: dict[str, JudgeScorer] = {}
_judges_lock = threading.Lock()


def check_scorer_name(name: str) -> str | None:
    """A one-sentence problem with a scorer name, or ``None`` when it is valid (loads nothing)."""
    base, sep, arg = name.strip().partition(":")
    if base not in SCORERS:
        return f"unknown scorer '{name}'; use one of: {', '.join(SCORERS)} (judge:LLMSPEC, numeric:TOLERANCE)."
    if base == "numeric" and sep:
        try:
            if float(arg) < 0:
                raise ValueError
        except ValueError:
            return f"'{name}' needs a relative tolerance of 0 or more after 'numeric:', e.g. numeric:0.01."
    if sep and base not in ("numeric", "judge"):
        return f"the scorer '{base}' takes no ':' argument."
    return None


def get_scorer(name: str | Scorer | None) -> Scorer:
    """A scorer from its name (``None`` -> ``default``); judges are built once per LLM spec."""
    if isinstance(name, Scorer):
        return name
    name = (name or "default").strip()
    problem = check_scorer_name(name)
    if problem:
        raise ConfigError(problem[0].upper() + problem[1:])
    base, _, arg = name.partition(":")
    if base == "numeric" and arg:
        return NumericScorer(rel_tol=float(arg))
    if base == "judge":
        with _judges_lock:
            if name not in _judges:
                _judges[name] = JudgeScorer(arg or None)
            return _judges[name]
    return SCORERS[base]()


def score_item(scorer: Scorer, prediction: str | None, item: EvalItem) -> float:
    """Score with ``scorer``, clamped to [0, 1]."""
    value: Any = scorer.score(prediction, item.answers, item)
    return min(max(float(value), 0.0), 1.0)

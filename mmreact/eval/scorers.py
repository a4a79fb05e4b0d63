"""Scorers: ``score(prediction, answers, item) -> float in [0, 1]``.

``answers`` are alternatives (matching any one is enough; MM-Vet's ``<OR>`` inside one answer
splits it further). Inside one answer, ``<AND>`` joins parts that must all be present; the credit
is the fraction present (MM-Vet's convention).

==================  ===========================================================================
name                rule
==================  ===========================================================================
``exact``           normalised texts are equal (see :mod:`mmreact.eval.text`)
``contains``        a normalised answer occurs, as whole words, neither negated nor hedged
``numeric[:TOL]``   the first or the last number of the prediction (negated and hedged ones
                    skipped) equals the answer's number within a relative tolerance (default
                    0.001) or an absolute one of 1e-9, in the same unit when both name one;
                    currency, units, thousands separators and percentages are understood
``choice``          the one option the prediction picks, by letter (``B``, ``(B)``, ``answer:
                    B``) or by its text, against the answer's letter or text
``judge:LLMSPEC``   an LLM grades 0.0-1.0 with MM-Vet's few-shot prompt (see :mod:`.judge`)
``default``         ``numeric`` when the answer is a number (optionally with a unit), else
                    ``contains`` or ``exact``
==================  ===========================================================================

Rules every rule-based scorer applies first (so a wrong answer cannot pass):

* **Options.** An item's options are its ``choices``, else the lettered options written in its
  question ("(A) ... (B) ..."), else, when every answer is "yes" or "no", yes and no. A
  prediction that names an option the answers do not name scores 0: "to the left or to the
  right" is wrong when the answer is "right". An item says otherwise by naming several options
  in its answer ("red <AND> blue"). An option mentioned only under a negation ("not the left")
  is not named.
* **Negation and hedges.** "not X", "no X", "isn't X" do not match X; neither does X in "X or Y".
* **Copied observation lines.** A prediction holding a pixel box ``[x1, y1, x2, y2]`` (an
  expert's observation line copied whole, e.g. ``8 AM 6 PM [65, 253, 335, 295]``) scores 0,
  unless an answer holds a box too: the model echoed a tool instead of answering, and which part
  of the line is its answer cannot be told.
* **Length.** Text matching (``contains``, ``choice`` by option text, ``default`` on text
  answers) gives no credit to a prediction of more than :data:`MAX_WORDS` words: a long enough
  text contains any short answer. Use ``judge`` for long-form answers.

The judge sees the prediction as it is and applies none of these rules.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MMReactError
from . import _text as tx
from ._text import Text, is_numeric_answer, normalize, numbers, words_to_digits

if TYPE_CHECKING:
    from ..qa import QAItem as EvalItem

__all__ = [
    "SCORING_VERSION", "MAX_WORDS", "Scorer", "ScoreError", "ExactScorer", "ContainsScorer", "NumericScorer",
    "ChoiceScorer", "DefaultScorer", "JudgeScorer", "get_scorer", "check_scorer_name", "score_item", "normalize",
    "numbers", "words_to_digits", "is_numeric_answer", "parse_options", "parse_judge_score", "item_options",
]

#: Bumped whenever a scoring rule changes; part of every result's fingerprint, so results scored
#: by older rules are never mixed with new ones.
SCORING_VERSION = 2
#: Longest prediction (in words) that text matching gives credit to.
MAX_WORDS = 100


class ScoreError(MMReactError, ValueError):
    """A scorer could not produce a score (e.g. the judge's reply held no score)."""


# -- options -----------------------------------------------------------------------------------
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


def item_options(item: EvalItem | None, answers: Sequence[str] = ()) -> dict[str, str]:
    """An item's options, lettered: its ``choices``, else the question's lettered options, else
    yes/no when every answer is "yes" or "no"."""
    if item is not None and item.choices:
        return {chr(ord("A") + i): c for i, c in enumerate(item.choices)}
    if item is not None:
        parsed = parse_options(item.question)
        if parsed:
            return parsed
    if answers and all(normalize(a) in ("yes", "no") for a in answers):
        return {"A": "yes", "B": "no"}
    return {}


def _answer_letter(answer: str, options: dict[str, str]) -> str | None:
    m = _LETTER_ONLY.match(answer)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    return None


def allowed_options(answers: Sequence[str], options: dict[str, str]) -> set[str]:
    """The options the answers name (a letter answer names its option)."""
    allowed: set[str] = set()
    for answer in answers:
        for part in tx.split_parts(answer):
            letter = _answer_letter(part, options)
            allowed |= {letter} if letter else tx.named_options(tx.read(part), options)
    return allowed


def letters_named(prediction: str, options: dict[str, str]) -> set[str]:
    """Option letters the prediction writes as letters (``B``, ``(B)``, ``answer: B``, ``B. ...``)."""
    found: set[str] = set()
    for pattern in (_LETTER_ONLY, _PAREN_LETTER, _KEYWORD_LETTER, _LEADING_LETTER):
        for m in pattern.finditer(prediction):
            letter = m.group(1).upper()
            if not options or letter in options:
                found.add(letter)
    return found


# -- scorers -----------------------------------------------------------------------------------
def _contains(pred: Text, answer: str, several: bool = False) -> bool:
    """``answer`` occurs in a prediction of at most MAX_WORDS words, not negated (nor hedged,
    unless it is one of ``several`` parts the prediction lists)."""
    return len(pred.words) <= MAX_WORDS and tx.affirmed(pred, answer, hedges=not several)


def _exact(pred: Text, answer: str) -> bool:
    return pred.normalized == normalize(answer) != ""


class Scorer:
    """Base class: ``score(prediction, answers, item)`` returns a float in [0, 1].

    Rule-based scorers implement :meth:`_part` (one answer part against the prediction, read
    once); the base applies the options, box and ``<AND>``/``<OR>`` rules of the module docstring.
    """

    name = "scorer"

    @property
    def spec(self) -> str:
        """The scorer as ``--scorer`` names it, with its settings (``numeric:0.01``)."""
        return self.name

    @property
    def fingerprint(self) -> str:
        """What a result's score depends on: the spec and the version of the rules."""
        return f"{self.spec}@{SCORING_VERSION}"

    def score(self, prediction: str | None, answers: Sequence[str], item: EvalItem | None = None) -> float:
        if prediction is None or not prediction.strip():
            return 0.0
        alternatives = tx.split_alternatives(answers)
        if tx.holds_box(prediction) and not any(tx.holds_box(a) for a in alternatives):
            return 0.0
        pred = tx.read(prediction)
        options = item_options(item, alternatives)
        if options and tx.named_options(pred, options) - allowed_options(alternatives, options):
            return 0.0
        best = 0.0
        for answer in alternatives:
            parts = tx.split_parts(answer)
            if len(parts) > 1:
                value = sum(self._part(pred, p, item, True) for p in parts) / len(parts)
            else:
                value = self._part(pred, answer, item, False)
            best = max(best, value)
            if best >= 1.0:
                break
        return min(max(best, 0.0), 1.0)

    __call__ = score

    def _part(self, pred: Text, answer: str, item: EvalItem | None, several: bool) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<scorer {self.spec}>"


class ExactScorer(Scorer):
    """Normalised equality; ``<AND>`` parts are looked for as contained words instead."""

    name = "exact"

    def _part(self, pred: Text, answer: str, item: EvalItem | None, several: bool) -> float:
        return float(_contains(pred, answer, True) if several else _exact(pred, answer))


class ContainsScorer(Scorer):
    """A normalised answer occurs as whole words in the prediction, neither negated nor hedged."""

    name = "contains"

    def _part(self, pred: Text, answer: str, item: EvalItem | None, several: bool) -> float:
        return float(_contains(pred, answer, several))


class NumericScorer(Scorer):
    """The first or last number of the prediction matches the answer's number within tolerance."""

    name = "numeric"

    def __init__(self, rel_tol: float = 1e-3, abs_tol: float = 1e-9) -> None:
        if rel_tol < 0 or abs_tol < 0:
            raise ConfigError("Numeric tolerances must be 0 or more.")
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    @property
    def spec(self) -> str:
        extra = f":abs={self.abs_tol:g}" if self.abs_tol != 1e-9 else ""
        return f"numeric:{self.rel_tol:g}{extra}"

    def _part(self, pred: Text, answer: str, item: EvalItem | None, several: bool) -> float:
        target = [n for n in numbers(answer) if not n.negated]
        if not target:  # a non-numeric answer among numeric ones: compare as text
            return float(_exact(pred, answer) or _contains(pred, answer, several))
        found = [n for n in numbers(pred) if not n.negated and (several or not n.hedged)]
        if not found:
            return 0.0
        picked = found if several else [found[0], found[-1]]
        want = target[0]
        return float(any(
            tx.compatible_units(f.unit, want.unit)
            and any(math.isclose(p, w, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
                    for p in tx.candidates(f) for w in tx.candidates(want))
            for f in picked))


class DefaultScorer(Scorer):
    """Numeric for numeric answers, else contains or exact (letter answers: as ``choice``)."""

    name = "default"

    def __init__(self) -> None:
        self.numeric = NumericScorer()

    def _part(self, pred: Text, answer: str, item: EvalItem | None, several: bool) -> float:
        options = item_options(item)
        if options and _answer_letter(answer, options):
            return ChoiceScorer()._part(pred, answer, item, several)
        if is_numeric_answer(answer):
            return self.numeric._part(pred, answer, item, several)
        return float(_contains(pred, answer, several) or _exact(pred, answer))


class ChoiceScorer(Scorer):
    """Multiple choice: the one option the prediction picks, by letter or by option text."""

    name = "choice"

    @staticmethod
    def options(item: EvalItem | None) -> dict[str, str]:
        return item_options(item) if item is not None else {}

    @staticmethod
    def picked(prediction: str | Text, options: dict[str, str]) -> str | None:
        """The letter of the one option picked; ``None`` when none or several are named."""
        pred = tx.as_text(prediction)
        named = letters_named(pred.raw, options)
        if len(pred.words) <= MAX_WORDS:
            named |= tx.named_options(pred, options)
        return next(iter(named)) if len(named) == 1 else None

    def _part(self, pred: Text, answer: str, item: EvalItem | None, several: bool) -> float:
        options = self.options(item)
        target = _answer_letter(answer, options) if options else (
            m.group(1).upper() if (m := _LETTER_ONLY.match(answer)) else None)
        if target is None:
            target = next((k for k, t in options.items() if normalize(t) == normalize(answer)), None)
        if target is None:  # the answer is not one of the options: compare texts
            return DefaultScorer()._part(pred, answer, item, several)
        return float(self.picked(pred, options) == target)


def __getattr__(name: str) -> Any:
    if name in ("JudgeScorer", "parse_judge_score", "JUDGE_PROMPT"):  # defined in .judge, which builds on Scorer
        from . import judge

        return getattr(judge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Scorer names; ``judge`` (in :mod:`.judge`) needs ``:LLMSPEC``.
SCORERS: dict[str, type[Scorer] | None] = {
    "default": DefaultScorer, "exact": ExactScorer, "contains": ContainsScorer, "numeric": NumericScorer,
    "choice": ChoiceScorer, "judge": None,
}
_judges: dict[str, Scorer] = {}
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
    if base == "judge" and not arg.strip():
        return "the judge scorer needs a judge model: write judge:LLMSPEC, e.g. judge:openai:gpt-4o-mini."
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
        from .judge import JudgeScorer

        with _judges_lock:
            if name not in _judges:
                _judges[name] = JudgeScorer(arg.strip())
            return _judges[name]
    cls = SCORERS[base]
    assert cls is not None
    return cls()


def score_item(scorer: Scorer, prediction: str | None, item: EvalItem) -> float:
    """Score with ``scorer``, clamped to [0, 1]."""
    value: Any = scorer.score(prediction, item.answers, item)
    return min(max(float(value), 0.0), 1.0)

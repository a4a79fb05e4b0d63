"""Grounding: is every fact of an answer something the experts saw?

:func:`ground` takes an answer and the evidence of its run (the experts' content: OCR lines,
captions, region captions, object labels and counts, tags; never the format text around them nor
box coordinates; see :func:`evidence_from_calls`) and returns a :class:`Grounding`: the answer's
facts, each supported (with the :class:`Evidence` that supports it: its call, line and box) or not.

Facts, found in this order (a span taken by one kind is not read again as another):

* ``quote``: text in quotation marks must appear in the evidence;
* ``date``: ``2024-03-05``, ``05/03/2024`` (either day-month order), ``March 5, 2024``,
  ``5th of March``, ``March 2024``; matches a date of the same month whose year and day agree
  where both give one;
* ``time``: ``7:30 PM``, ``9pm``, ``14:35``, ``14h35``, ``noon``; ``19:30`` matches ``7:30 PM``
  and a time written without AM/PM may be either;
* ``amount``: a number with a currency sign or word, or a percentage; compared by value;
* ``code``: a token of letters and digits (``B12``, ``KL1234``, ``Q4``), not a number with a
  unit (``5kg``) nor an ordinal (``3rd``); it must be one evidence token or two or three adjacent
  ones written together (``KL 1234``);
* ``number``: digits, or a number word from two up ("one" is rarely a number); compared by value;
* ``name``: a run of capitalised words ("Green Leaf Grocery", "The Quiet River"; leading "The",
  "Yes" and the like dropped; one capitalised word that starts a sentence is a name only in an
  answer of one or two words, or when it is all capitals); it must appear as whole words in one piece of evidence, or across the lines of
  one call (OCR splits names over lines);
* ``object``: a word of the closed object vocabulary (:mod:`mmreact.grounding.vocab`: COCO and
  Open Images classes with synonyms and plurals) that the answer asserts (not negated). Checked
  only when an expert that sees objects ran (caption, dense captions, detection, tags): text
  printed on a thing does not name the thing, so with OCR alone an object word is neither
  evidence for nor against an answer.

OCR's usual confusions are tolerated where that is safe, and the fact's ``note`` says what the
evidence wrote:

* numbers: ``7.5`` = ``7.50`` = ``$7.50`` (compared by value: a trailing zero or a currency
  sign changes nothing), ``1,234`` = ``1234``, a decimal comma ``3,50`` = ``3.50``, and digits
  that OCR read as look-alike letters inside a number (``1O.50``, ``l2``) are read as digits;
* times: ``14:35`` = ``14.35`` (OCR mixes ``:`` and ``.``);
* names, quotes and codes: case, punctuation and look-alike characters (``0``/``O``,
  ``1``/``l``/``I``, ``rn``/``m``, ``vv``/``w``, ``cl``/``d``) are folded before comparing.
  Letters and digits are never folded inside numbers in the answer, so ``7.15`` is not ``7.75``.

A number that is not in the evidence is still supported, when the question asks for arithmetic
("how much more", "together", "in total", "if ...": :func:`asks_computation`), if one arithmetic
step over the evidence's and the question's numbers gives it (``a + b``, ``a - b``, ``a x b``, ``a / b``, or
``q x a + b`` with ``q`` from the question: "two coffees and one muffin"): exactly (a quotient
to the answer's own precision); the pieces of times and dates are no operands ("7:30" holds no
30); the note shows the step. Numbers below 10 written without decimals ("5", not "5.00") are
never "computed" (too easily hit by chance), nor is anything when the evidence holds over 120
distinct numbers. In such a question, the numbers it states itself are given, not claimed: an
answer that restates them ("two tickets" for "what would two tickets cost?") is supported, noted
``from the question``; a question that asks for no arithmetic lends its numbers nothing ("Do
tickets cost $25?" "Yes, $25." is unsupported).

An answer without checkable facts ("yes", "the second image") is supported. The check is a
heuristic over text: it says whether what an answer states was *seen*, not whether the answer
is right (the right line can be misread; a seen fact can answer another question).
"""

from __future__ import annotations

from ._check import asks_computation, fold, ground
from ._evidence import from_artifact as evidence_from_artifact
from ._evidence import from_calls as evidence_from_calls
from ._evidence import from_context as evidence_from_context
from ._records import VISUAL_KINDS, Evidence, Fact, Grounding, Mode
from ._relevance import embedder, relevance
from ._spans import (
           MAX_SPAN_WORDS,
           NOTHING_SEEN,
           LAYOUT_BONUS,
           answer_phrases,
           asks_for_place,
           is_yes_no,
           layout_prior,
           question_options,
)

__all__ = ["asks_computation", "Evidence", "Fact", "Grounding", "MAX_SPAN_WORDS", "Mode", "NOTHING_SEEN", "is_yes_no", "VISUAL_KINDS", "answer_phrases",
           "evidence_from_artifact", "evidence_from_calls", "evidence_from_context", "fold", "ground",
           "question_options", "relevance", "embedder", "asks_for_place", "layout_prior",
           "LAYOUT_BONUS"]

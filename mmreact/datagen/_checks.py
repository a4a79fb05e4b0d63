"""Pair checks that read the text itself: placeholders, echoes, language, length, a copied
context, and answers that touch nothing the context holds.

Each is a pure function that returns its findings, one phrase each (the filter that calls it
names the rule). They exist because a filter that only looks for bad facts passes text that has
no facts at all: ``[ANSWER]``, "N/A", ".", Lorem ipsum, the question said back, a Spanish reply to
an English prompt, a 10,000-character ramble, the context pasted in as a "description".

Decisions:

- ``language`` knows scripts (CJK, Cyrillic, Arabic, ...) and, in Latin script, the function
  words of English, Spanish, French, German, Italian, Portuguese and Dutch. A text is judged
  only when it gives enough evidence (a third of its letters in another script, or at least two
  function words, more of another language's than of the expected one's); words the context holds (a
  Spanish sign quoted in an English answer) are not counted. The expected language is that of
  the prompt's system message (English for mmreact's own prompts).
- ``length`` caps are far above what a good answer needs, and independent of the local
  grammars' limits: remote backends are
  asked for the format, not held to it, so ``format_ok=false`` alone rejects nothing; what is
  wrong in such a reply is judged here and by the parser.
- ``unrelated``: a pair must share at least one content word (or one object class, "puppy" for
  "dog") with the context. Text printed on a thing, a caption, a label: the context is all
  the writer knew; a pair that touches none of it was made up.
- ``circular`` (reported as ``repetition``): a thing defined by itself, or an answer whose
  content words are mostly the same few: the loops of a small model that the sentence-level
  repetition check does not see.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["placeholder", "echo", "circular", "language_of", "wrong_language", "too_long", "copies_context",
           "content_words", "unrelated", "MAX_CHARS", "MAX_QUESTION_CHARS"]

#: The longest answer of each kind that is kept (characters).
MAX_CHARS = {"conversation": 1000, "reasoning": 1500, "detail": 2500}
MAX_QUESTION_CHARS = 300

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_PLACEHOLDER = re.compile(
    r"\[\s*(?:question|answer|q|a|text|name|number|object|image|caption|insert[^\]]*|your [^\]]*|[A-Z][A-Z _]{2,})"
    r"\s*\]|\{\{?\s*(?:question|answer|text|name|caption)\s*\}?\}|<\s*(?:question|answer|text)\s*>|"
    r"\blorem ipsum\b|\bdolor sit amet\b", re.IGNORECASE)
_EMPTY_ANSWERS = frozenset({"n a", "na", "null", "nil", "tbd", "todo", "xxx", "answer", "question", "placeholder",
                            "same as above", "see above", "etc", "blah", "blah blah", "test"})

_STOPWORDS = {
    "en": "the and of to is are was were it this that with for by be has have what which there their they he she "
          "you not from its an at on as or but can will would there's it's these those".split(),
    "es": "el los las una y del es son está están que con por para su lo al como pero más muy hay también este "
          "esta se le".split(),
    "fr": "le les une et des du est sont que qui avec pour sur au aux il elle ce cette mais plus très dans "
          "nous vous ils".split(),
    "de": "der das ein eine und oder von zu im ist sind mit für auf dem den des nicht sich auch ich wir sie".split(),
    "it": "il lo gli le una di della è sono che con per da non si al anche questo questa nel".split(),
    "pt": "os um uma e ou do da em é são que com por para se na não mais muito também".split(),
    "nl": "het een en van is zijn dat met voor op te niet ook wij zij deze".split(),
}
_SETS = {lang: frozenset(words) for lang, words in _STOPWORDS.items()}
#: Scripts by code point range; a text a third of whose letters are in one of them is in that script.
_SCRIPTS = (("zh/ja", ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))),
            ("ko", ((0xAC00, 0xD7AF), (0x1100, 0x11FF))), ("ru/cyrillic", ((0x0400, 0x04FF),)),
            ("ar", ((0x0600, 0x06FF), (0x0750, 0x077F))), ("he", ((0x0590, 0x05FF),)),
            ("el", ((0x0370, 0x03FF),)), ("hi/devanagari", ((0x0900, 0x097F),)), ("th", ((0x0E00, 0x0E7F),)))
_CONTENT_STOP = frozenset("""
a an the and or of to in on at by for from with without is are was were be been being it its this that these those
there here what which who whom whose where when why how do does did can could may might must shall should will would
has have had not no yes any some all each every one two image picture photo shown shows show see seen visible
describe description detail details question answer about into onto over under than then so as if but also very
more most much many such just only other another same their they them he she his her you your we our i me my
""".split())


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def _norm(text: str) -> str:
    return " ".join(_words(text))


# -- placeholders and echoes ----------------------------------------------------------------------
def placeholder(question: str, answer: str) -> list[str]:
    """Template slots, Lorem ipsum, "N/A" and answers without a single word."""
    out = []
    for text, what in ((question, "question"), (answer, "answer")):
        m = _PLACEHOLDER.search(text)
        if m:
            out.append(f"the {what} holds a placeholder ('{m.group(0)}')")
    norm = _norm(answer)
    if answer.strip() and not norm:
        out.append("the answer has no words")
    elif norm in _EMPTY_ANSWERS:
        out.append(f"the answer is a placeholder ('{answer.strip()}')")
    return out


def echo(question: str, answer: str) -> list[str]:
    """The question said back as its answer, or an answer that is itself a question."""
    q, a = _norm(question), _norm(answer)
    if a and a == q:
        return ["the answer repeats the question"]
    stripped = answer.strip()
    if stripped.endswith("?") and not re.search(r"[.!](?:\s|$)", stripped[:-1]):
        return ["the answer is a question"]
    return []


# -- language ------------------------------------------------------------------------------------
def _script(text: str) -> str | None:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    for name, ranges in _SCRIPTS:
        n = sum(1 for c in letters if any(lo <= ord(c) <= hi for lo, hi in ranges))
        if n * 3 >= len(letters):
            return name
    return None


def language_of(text: str, known: frozenset[str] = frozenset()) -> str | None:
    """The language of ``text`` ("en", "es", ..., languages that tie joined by "/", or a script such
    as "zh/ja"), or ``None`` when it gives too little evidence; words in ``known`` (the context's)
    are not counted."""
    script = _script(" ".join(w for w in _WORD.findall(text) if w.casefold() not in known))
    if script is not None:
        return script
    words = [w for w in _words(text) if w not in known]
    scores = Counter({lang: sum(1 for w in words if w in stop) for lang, stop in _SETS.items()})
    top = max(scores.values())
    if top < 2:
        return None
    return "/".join(lang for lang, n in scores.items() if n == top)


def wrong_language(question: str, answer: str, expected: str | None, known: frozenset[str] = frozenset()
                   ) -> list[str]:
    """The question or answer is written in another language than ``expected``."""
    if not expected:
        return []
    out = []
    for text, what in ((question, "question"), (answer, "answer")):
        lang = language_of(text, known)
        if lang is not None and expected not in lang.split("/"):
            out.append(f"the {what} is in {lang}, the prompt in {expected}")
    return out


# -- length --------------------------------------------------------------------------------------
def too_long(question: str, answer: str, kind: str) -> list[str]:
    out = []
    if len(question) > MAX_QUESTION_CHARS:
        out.append(f"the question is {len(question)} characters (at most {MAX_QUESTION_CHARS})")
    limit = MAX_CHARS.get(kind)
    if limit is not None and len(answer) > limit:
        out.append(f"the answer is {len(answer)} characters (at most {limit} for {kind})")
    return out


# -- the context ---------------------------------------------------------------------------------
def copies_context(answer: str, context_text: str, *, run: int = 5, share: float = 0.8, min_words: int = 12
                   ) -> list[str]:
    """The answer is mostly the context pasted in: at least ``share`` of its words lie in runs of
    ``run`` or more words that follow each other in the context too. (For descriptions and
    reasoning: a conversation answer that reads out all the text asked for is a transcription.)"""
    words = _words(answer)
    if len(words) < min_words:
        return []
    ctx = _words(context_text)
    grams = {tuple(ctx[i:i + run]) for i in range(len(ctx) - run + 1)}
    covered = [False] * len(words)
    for i in range(len(words) - run + 1):
        if tuple(words[i:i + run]) in grams:
            for j in range(i, i + run):
                covered[j] = True
    if sum(covered) >= share * len(words):
        return [f"{sum(covered)} of its {len(words)} words are the context's, copied"]
    return []


_SELF_DEFINED = re.compile(r"\b(?:the|a|an) (\w+) (?:is|are|was|were|for|of) (?:the|a|an) \1\b", re.IGNORECASE)


def circular(answer: str, *, min_words: int = 4, min_share: float = 0.6) -> list[str]:
    """An answer (or question) that goes round in its own words: a thing defined by itself ("The
    person is the person who is parked", "the menu for the menu"), or fewer than ``min_share`` of
    its content words distinct ("The coin of the object is the coin that is not the coin of the
    object"). Real answers name new things; a looping small model says the same few again."""
    m = _SELF_DEFINED.search(answer)
    if m:
        return [f"defines a thing by itself ('{m.group(0)}')"]
    words = [_stem(w) for w in _words(answer) if (w.isdigit() or len(w) > 2) and w not in _CONTENT_STOP]
    if len(words) < min_words or len(set(words)) >= min_share * len(words):
        return []
    top, n = Counter(words).most_common(1)[0]
    return [f"goes round in its own words ('{top}' {n} times in {len(words)} content words)"]


def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    """The words that carry content (no function words, numbers kept), stemmed."""
    return {_stem(w) for w in _words(text) if (w.isdigit() or len(w) > 2) and w not in _CONTENT_STOP}


def unrelated(question: str, answer: str, context_words: set[str], context_classes: set[str],
              answer_classes: set[str]) -> list[str]:
    """The pair shares no content word and no object class with the context."""
    if content_words(f"{question} {answer}") & context_words or answer_classes & context_classes:
        return []
    return ["shares no word with the image's context"]

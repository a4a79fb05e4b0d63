"""Quality filters: pure functions that return their reasons; no model calls, re-runnable.

Per question/answer pair (a reason drops that pair; a record left with no pair is rejected):

- ``structure``: an empty question or answer, or an ``<image>`` token inside the text (the
  export puts exactly one at the start of the first question);
- ``refusal``: apologies and refusals ("I'm sorry", "as an AI", "I cannot determine");
- ``leakage``: the answer gives away where it came from: coordinates, "bounding box", "caption",
  "provided information", "according to the description", ...;
- ``hallucination`` (CHAIR-style): the answer asserts an object of the closed vocabulary
  (:mod:`mmreact.grounding.vocab`) that the context does not contain; negated mentions ("there is
  no dog") assert nothing; after a "yes", the question's objects count as asserted. Only when an
  expert that sees objects ran (:func:`sees_objects`): with OCR alone an object word is no
  evidence either way, but a question whether an object is there has no known answer;
- ``count``: "two dogs" when the detector (or the user's boxes) found another number of dogs;
  only checked when detection ran;
- ``facts``: the answer states a number, amount, time, date, code, name or quotation that the
  context does not hold (the grounding check of :mod:`mmreact.grounding`, the same one the agent
  records on every answer; object words are the ``hallucination`` filter's); the reason names
  the unsupported span;
- ``repetition``: a sentence or question said before in the record, or one phrase over and over.

Also per pair (:mod:`mmreact.datagen.checks`): ``placeholder`` (``[ANSWER]``, Lorem ipsum, "N/A",
an answer without a word), ``echo`` (the question said back, or an answer that is a question),
``language`` (another language than the prompt's), ``length`` (an answer past
:data:`~mmreact.datagen._checks.MAX_CHARS`), ``copy`` (the context pasted in as the answer) and,
last, ``unrelated`` (the pair touches no word or object of the context). ``hallucination``
is checked only when an expert that sees objects ran (:func:`sees_objects`).

Per record: ``structure`` (the reply did not parse: text outside the blocks, a question with no
answer, nothing at all), ``duplicate`` (the same pixels as an image earlier in the store; see
:func:`duplicates`) and ``context`` (the experts found nothing in the image, so no LLM was asked).
Across records: ``generic`` (a pair said word for word on three or more images; see
:func:`mark_generic`). Every reason names its rule.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from ..grounding import Evidence, evidence_from_context, ground
from ..grounding.vocab import NUMBER_WORDS, Vocabulary, default_vocabulary
from . import _checks as checks
from .context import Context
from .records import Reason, Record

__all__ = ["apply_filters", "check_pair", "mark_generic", "sees_objects", "unseen_presence", "unsupported_facts",
           "context_facts", "duplicates", "mark_duplicates", "hallucination", "count_mismatch", "leakage", "refusal",
           "repetition", "structure", "FILTERS"]

FILTERS = ("structure", "placeholder", "echo", "refusal", "language", "length", "leakage", "copy", "unrelated",
           "facts", "hallucination", "count", "repetition", "generic", "duplicate", "context")
#: Experts whose output says what is *in* the picture. Only when one ran (or a user's labels name
#: objects) is an object word that the context lacks evidence against an answer: text printed on
#: a thing does not name the thing ("The Quiet River" on a cover says nothing of a book).
VISUAL_TOOLS = frozenset({"caption", "dense_caption", "detect", "tags"})
#: A question/answer pair said word for word on this many images says nothing about any of them.
GENERIC_MIN_IMAGES = 3
#: Record-level reasons that come from outside the record's text (kept when filters rerun).
EXTERNAL = ("duplicate", "context")

_COORDS = re.compile(r"[\[(]\s*-?\d*\.?\d+\s*(?:,\s*-?\d*\.?\d+\s*){1,3}[\])]")
_LEAK_PHRASES = re.compile(
    r"\b(?:bounding[ -]?box(?:es)?|coordinates?|captions?|captioned|annotations?|annotated|"
    r"(?:provided|given|supplied) (?:information|description|descriptions|text|context|data|details)|"
    r"information (?:provided|given|supplied)|"
    r"(?:according to|based on|from) the (?:description|descriptions|information|context|data|text provided|"
    r"given text|details provided)|"
    r"object detection|detected objects?|detection results?|ocr|"
    r"(?:extracted|recogni[sz]ed|detected|given|provided|listed|above) (?:text|objects|labels|lines)|"
    r"text (?:extracted|recogni[sz]ed|detected|provided|given)|text in the image(?=\s*:)|"
    r"(?:the|this|given|provided|image's|image) context|symbolic representation|image description)\b",
    re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i am sorry|sorry, (?:but )?i|i apologi[sz]e|my apologies|as an ai|as a language model|"
    r"i (?:cannot|can't|can not|am unable to|am not able to|'m unable to|'m not able to|do not have|don't have) "
    r"(?:see|view|access|determine|tell|say|answer|provide|identify|know|help)|"
    r"(?:it is|it's) (?:not possible|impossible|difficult|hard) to (?:determine|tell|say|know)|"
    r"(?:cannot|can't) be determined|unable to (?:determine|see|tell|answer|identify)|"
    r"i (?:don'?t|do not) know|i'?m not sure|i am not sure|no idea|hard to say)",
    re.IGNORECASE)
_NON_ANSWER = re.compile(r"^\W*(?:unknown|not known|unclear|cannot say|can't say|not sure|no comment)\W*$",
                         re.IGNORECASE)
_YES = re.compile(r"^\W*yes\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")
_ANY_WORD = re.compile(r"[^\W_]+")


# -- per pair ------------------------------------------------------------------------------------
def structure(question: str, answer: str) -> list[str]:
    out = []
    if not question.strip():
        out.append("the question is empty")
    if not answer.strip():
        out.append("the answer is empty")
    if "<image>" in question or "<image>" in answer:
        out.append("the text holds an <image> token")
    return out


def refusal(answer: str) -> list[str]:
    m = _REFUSAL.search(answer) or _NON_ANSWER.match(answer)
    return [f"refuses or apologises ('{m.group(0).strip()}')"] if m else []


def leakage(answer: str) -> list[str]:
    out = []
    m = _COORDS.search(answer)
    if m and re.search(r"\d\.\d|\d\s*,\s*\d", m.group(0)):
        out.append(f"gives coordinates ('{m.group(0)}')")
    out += [f"mentions '{m.group(0)}'" for m in _LEAK_PHRASES.finditer(answer)]
    return list(dict.fromkeys(out))


def hallucination(question: str, answer: str, present: set[str], vocab: Vocabulary) -> list[str]:
    """Objects the answer asserts that are not among ``present`` (canonical classes)."""
    asserted = [m for m in vocab.mentions(answer) if not m.negated]
    if _YES.match(answer):
        asserted += [m for m in vocab.mentions(question) if not m.negated]
    missing = dict.fromkeys(m.surface for m in asserted if m.canonical not in present)
    return [f"'{s}' is not in the image's context" for s in missing]


_PRESENCE = re.compile(r"^\W*(?:is|are) there\b|\b(?:do|can) you see\b|\bis (?:a|an|any) .+ (?:visible|present)\b",
                       re.IGNORECASE)


def unseen_presence(question: str, vocab: Vocabulary) -> list[str]:
    """A question whether an object is there, asked when no expert that sees objects looked: no
    answer to it, yes or no, is known (what an OCR line says does not tell what else is there)."""
    if not _PRESENCE.search(question):
        return []
    asked = dict.fromkeys(m.surface for m in vocab.mentions(question))
    return [f"asks whether there is a {s}, and no expert that sees objects looked" for s in asked]


def count_mismatch(answer: str, detected: Counter[str], vocab: Vocabulary) -> list[str]:
    """Stated counts ("three cups") that differ from the detector's count of that class."""
    out = []
    for m in vocab.mentions(answer):
        if m.count is None or m.negated or m.canonical not in detected:
            continue
        if m.count != detected[m.canonical]:
            out.append(f"says {m.count} {m.surface}, the detector found {detected[m.canonical]}")
    return out


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


#: A run of this many words said twice in a record's answers is a repeat (an OCR line quoted in
#: two answers is shorter than that).
REPEAT_WORDS = 6


def repetition(pairs: Sequence[dict[str, str]]) -> dict[int, list[str]]:
    """Per pair index: a question asked before, a sentence said before, a run of
    :data:`REPEAT_WORDS` words said before (in this answer or an earlier one), or a looping phrase."""
    out: dict[int, list[str]] = {}
    questions: set[str] = set()
    sentences: set[str] = set()
    runs: set[tuple[str, ...]] = set()
    for i, p in enumerate(pairs):
        found: list[str] = []
        q = _norm(p["question"])
        if q and q in questions:
            found.append("asks a question asked before")
        questions.add(q)
        for s in _SENTENCE.split(p["answer"]):
            n = _norm(s)
            if len(n.split()) < 4:
                continue
            if n in sentences:
                found.append(f"repeats the sentence '{s.strip()[:80]}'")
            sentences.add(n)
        said = _norm(p["answer"]).split()
        again = None
        for j in range(len(said) - REPEAT_WORDS + 1):
            run = tuple(said[j:j + REPEAT_WORDS])
            if run in runs and again is None:
                again = f"says '{' '.join(run)}' again"
            runs.add(run)
        words = _norm(p["answer"]).split()
        grams = Counter(tuple(words[j:j + 3]) for j in range(len(words) - 2))
        loop = [" ".join(g) for g, n in grams.items() if n >= 4]
        if loop:
            found.append(f"says '{loop[0]}' over and over")
        if again and not found:  # a repeated sentence or a loop already says it
            found.append(again)
        if found:
            out[i] = list(dict.fromkeys(found))
    return out


def sees_objects(context: Context) -> bool:
    """Whether an expert that sees objects looked at the image (a captioner, dense captions, a
    detector, tags) or a user's labels name objects: only then does an object word the context
    lacks count against an answer."""
    return context.detected or bool(context.captions or context.objects or context.tags) or \
        any(s in VISUAL_TOOLS for s in context.sources)


def context_facts(context: Context | None, vocab: Vocabulary) -> tuple[set[str] | None, Counter[str] | None]:
    """The classes a context names (``None`` when nothing that sees objects ran: no hallucination
    check), and the detector's count per class (``None`` when it did not run)."""
    if context is None or not sees_objects(context):
        return None, None
    present = vocab.classes_in(context.vocabulary_text())
    if not context.detected:
        return present, None
    detected: Counter[str] = Counter()
    for label, n in context.detection_counts().items():
        canon = vocab.canonical(label)
        if canon is not None:
            detected[canon] += n
    return present, detected


def unsupported_facts(question: str, answer: str, evidence: Sequence[Evidence],
                      counted: frozenset[int] = frozenset()) -> list[str]:
    """The answer's facts that the context does not support, each in one phrase; object words and
    the numbers in ``counted`` (stated counts of detected objects: the ``count`` filter judges those)
    are left out."""
    check = ground(answer, evidence, question)
    out = []
    for f in check.unsupported:
        if f.kind == "object" or (f.kind == "number" and _count_value(f.text) in counted):
            continue
        out.append(f"{f.kind} '{f.text}' is not in the image's context")
    return out


def _count_value(text: str) -> int | None:
    word = text.lower()
    if word in NUMBER_WORDS:
        return NUMBER_WORDS[word]
    return int(word) if word.isdigit() else None


def check_pair(question: str, answer: str, present: set[str] | None, detected: Counter[str] | None,
               vocab: Vocabulary, evidence: Sequence[Evidence] | None = None, *, kind: str | None = None,
               language: str | None = None, context_text: str | None = None) -> list[Reason]:
    """Every pair-level reason against one question/answer pair (``pair`` left unset), given the
    context's classes (``None``: no hallucination check), detection counts (``None``: no count
    check), its evidence (``None``: no fact check), the record's ``kind`` (length limits), the
    prompt's ``language`` (``None``: not checked) and the context's text (``None``: no check of
    copying it, nor of touching it)."""
    reasons = [Reason("structure", d) for d in structure(question, answer)]
    reasons += [Reason("placeholder", d) for d in checks.placeholder(question, answer)]
    reasons += [Reason("echo", d) for d in checks.echo(question, answer)]
    reasons += [Reason("refusal", d) for d in refusal(answer)]
    reasons += [Reason("repetition", d) for d in checks.circular(answer)]
    reasons += [Reason("repetition", f"the question {d}") for d in checks.circular(question, min_words=99)]
    known = frozenset(checks.content_words(context_text) | {w.casefold() for w in _ANY_WORD.findall(context_text)}) \
        if context_text else frozenset()
    reasons += [Reason("language", d) for d in checks.wrong_language(question, answer, language, known)]
    if kind is not None:
        reasons += [Reason("length", d) for d in checks.too_long(question, answer, kind)]
    reasons += [Reason("leakage", d) for d in leakage(answer)]
    if context_text and kind in ("detail", "reasoning"):
        reasons += [Reason("copy", d) for d in checks.copies_context(answer, context_text)]
    if evidence is not None:
        counted = frozenset(m.count for m in vocab.mentions(answer)
                            if detected is not None and m.count is not None and m.canonical in detected)
        reasons += [Reason("facts", d) for d in unsupported_facts(question, answer, evidence, counted)]
    if present is not None:
        reasons += [Reason("hallucination", d) for d in hallucination(question, answer, present, vocab)]
    elif context_text is not None:
        reasons += [Reason("hallucination", d) for d in unseen_presence(question, vocab)]
    if detected is not None:
        reasons += [Reason("count", d) for d in count_mismatch(answer, detected, vocab)]
    if context_text and not reasons:  # the last resort: a pair that no other rule names
        asked = question if kind != "detail" else ""  # a description's "question" is a stock instruction
        reasons += [Reason("unrelated", d) for d in checks.unrelated(
            asked, answer, checks.content_words(context_text), vocab.classes_in(context_text),
            vocab.classes_in(f"{asked} {answer}"))]
    return reasons


# -- per record ----------------------------------------------------------------------------------
def apply_filters(record: Record, vocab: Vocabulary | None = None, language: str | None = "en") -> Record:
    """``record`` with ``kept``, ``reasons`` and ``status`` recomputed from its stored text;
    ``language`` is the prompt's (``None``: not checked).

    Error records come back unchanged; ``duplicate`` and ``context`` reasons already on the
    record are kept (they do not come from its text).
    """
    if record.status == "error":
        return record
    external = tuple(r for r in record.reasons if r.filter in EXTERNAL)
    if record.raw is None and not record.kind.startswith("template"):  # no LLM ran: nothing to check
        return record.with_(kept=(), reasons=external, status="rejected")
    vocab = vocab or default_vocabulary()
    context = Context.from_dict(record.context) if record.context else None
    present, detected = context_facts(context, vocab)
    evidence = evidence_from_context(context) if context is not None else None
    context_text = context.vocabulary_text() if context is not None else None
    reasons: list[Reason] = list(external)
    reasons += [Reason("structure", p) for p in record.problems]
    if not record.pairs and not record.problems:
        reasons.append(Reason("structure", "no question/answer pair"))
    kept: list[int] = []
    repeated = repetition(record.pairs) if not record.kind.startswith("template") else {}
    for i, p in enumerate(record.pairs):
        if record.kind.startswith("template"):  # instructions built from labels: structure only
            found = [Reason("structure", d) for d in structure(p["question"], p["answer"])]
        else:
            found = check_pair(p["question"], p["answer"], present, detected, vocab, evidence, kind=record.kind,
                               language=language, context_text=context_text)
            found += [Reason("repetition", d) for d in repeated.get(i, ())]
        if found:
            reasons += [Reason(r.filter, r.detail, i) for r in found]
        else:
            kept.append(i)
    whole = [r for r in reasons if r.pair is None]
    status = "accepted" if kept and not whole else "rejected"
    return record.with_(kept=tuple(kept), reasons=tuple(reasons), status=status)


def duplicates(records: Sequence[Record]) -> dict[int, str]:
    """Index -> the image it duplicates, for records whose pixels another image's record has.

    Per (pixel hash, kind), the first record in store order owns the pixels, except that a record
    already marked ``duplicate`` (the local engine writes those without asking the LLM) never
    does; a record of the same hash and kind from another path is a duplicate. Error records take
    no part.
    """
    owner: dict[tuple[str, str], str] = {}
    for marked_ok in (False, True):  # unmarked records first; marked ones only own what nothing else does
        for r in records:
            if r.status == "error" or not r.image_sha256:
                continue
            if any(x.filter == "duplicate" for x in r.reasons) == marked_ok:
                owner.setdefault((r.image_sha256, r.kind), r.image)
    out: dict[int, str] = {}
    for i, r in enumerate(records):
        if r.status != "error" and r.image_sha256:
            first = owner[(r.image_sha256, r.kind)]
            if first != r.image:
                out[i] = first
    return out


def mark_duplicates(records: Sequence[Record]) -> list[Record]:
    """``records`` with a ``duplicate`` reason (and status ``rejected``) on every duplicate."""
    dup = duplicates(records)
    out = []
    for i, r in enumerate(records):
        if i in dup and not any(x.filter == "duplicate" for x in r.reasons):
            r = r.with_(status="rejected", kept=(),
                        reasons=(Reason("duplicate", f"the same pixels as {dup[i]}"), *r.reasons))
        out.append(r)
    return out


def mark_generic(records: Sequence[Record], min_images: int = GENERIC_MIN_IMAGES) -> list[Record]:
    """``records`` with every question/answer pair that is said word for word (case and
    punctuation aside) on ``min_images`` or more different images dropped as ``generic``: a
    pair true of every picture teaches nothing about any one. Duplicates, errors and template
    records take no part; a record left with no pair is rejected. Idempotent."""
    images: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.status == "error" or r.kind.startswith("template") or any(x.filter == "duplicate" for x in r.reasons):
            continue
        for p in r.pairs:
            images.setdefault((_norm(p["question"]), _norm(p["answer"])), set()).add(r.image_sha256 or r.image)
    common = {k for k, v in images.items() if len(v) >= min_images}
    if not common:
        return list(records)
    out = []
    for r in records:
        hit = [i for i in r.kept if 0 <= i < len(r.pairs)
               and (_norm(r.pairs[i]["question"]), _norm(r.pairs[i]["answer"])) in common]
        if hit and r.status != "error" and not r.kind.startswith("template"):
            n = len(images[(_norm(r.pairs[hit[0]]["question"]), _norm(r.pairs[hit[0]]["answer"]))])
            kept = tuple(i for i in r.kept if i not in hit)
            reasons = (*r.reasons, *(Reason("generic", f"said word for word on {n} images", i) for i in hit))
            whole = [x for x in reasons if x.pair is None]
            r = r.with_(kept=kept, reasons=reasons, status="accepted" if kept and not whole else "rejected")
        out.append(r)
    return out

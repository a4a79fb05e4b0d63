"""What a grounded answer may be built from: runs of words of the evidence, the question's options.

Used by the grounded answer grammar (:mod:`mmreact.llms.grammar`): a grounded answer is one
run of consecutive words of one piece of evidence (an OCR line, a caption, a label, a tag, a
count), one of the options the question offers (``(A) ...``, ``... or ...?``), or, for a question
that starts with an auxiliary verb ("Is ...", "May you ..."), yes / no. With none of these (the
experts saw nothing and the question offers no options) the only answer is :data:`NOTHING_SEEN`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._records import Evidence

#: The grounded answer when nothing was seen and the question offers no options: the engine has
#: nothing to build an answer from, so it says so (instead of letting the model guess).
NOTHING_SEEN = "The tools found nothing that answers this."
#: The longest run of words an answer may take from one piece of evidence.
MAX_SPAN_WORDS = 12
_LETTERED = re.compile(r"\(([A-Ha-h])\)\s*([^()?\n]+?)(?=\s*\([A-Ha-h]\)|\s*[?.]?\s*$)")
_STOP_RIGHT = frozenset("of in on at for from with than by into onto under over near side part".split())
_LEADING = frozenset("to the a an on in at".split())


_YES_NO = re.compile(r"(?:^|[,:]\s*)(?:is|are|was|were|am|do|does|did|can|could|may|might|must|shall|should|will|"
                     r"would|has|have|had|isn't|aren't|doesn't|don't|didn't|can't|won't)\b", re.IGNORECASE)


def is_yes_no(question: str) -> bool:
    """Whether the question can be answered yes or no: it starts (or its last clause starts) with
    an auxiliary verb ("Is ...", "According to the sign, may you ...")."""
    body = re.split(r"\s*\([A-Ha-h]\)", question.strip())[0]  # the options of a lettered question
    last = re.split(r"(?<=[.!?])\s+", body)[-1]
    return bool(_YES_NO.search(last))


def question_options(question: str) -> list[str]:
    """The answers a question offers: ``(A) bottom left (B) ...`` gives ``A``, ``bottom left``,
    ...; "... handwritten or printed?" gives ``handwritten``, ``printed``."""
    out: list[str] = []
    lettered = _LETTERED.findall(question)
    for letter, text in lettered:
        out += [letter.upper(), text.strip()]
    if not lettered:
        last = re.split(r"(?<=[.!?])\s+", question.strip())[-1]
        words = re.findall(r"[\w'-]+|[,?;:]", last)
        if "or" in words:
            i = len(words) - 1 - words[::-1].index("or")
            right: list[str] = []
            for w in words[i + 1:]:
                if w in ",?;:" or w.lower() in _STOP_RIGHT or len(right) == 4:
                    break
                right.append(w)
            while right and right[0].lower() in _LEADING:
                right = right[1:]
            left: list[str] = []
            for w in reversed(words[:i]):
                if w in ",?;:" or len(left) == len(right):
                    break
                left.insert(0, w)
            if right and left and left[0].lower() not in _LEADING:
                out += [" ".join(left), " ".join(right)]
    return list(dict.fromkeys(o for o in out if o))


def _clauses(text: str) -> list[tuple[str, ...]]:
    """A text's words, split where a word ends with ``,`` or ``;`` (the mark dropped): a list's
    items are separate phrases ("green 95%, white 3%" -> "green 95%", "white 3%")."""
    out: list[tuple[str, ...]] = []
    current: list[str] = []
    for word in text.split():
        if word[-1] in ",;" and len(word) > 1:
            current.append(word[:-1])
            out.append(tuple(current))
            current = []
        else:
            current.append(word)
    if current:
        out.append(tuple(current))
    return out


def answer_phrases(evidence: Sequence[Evidence], question: str | None = None) -> list[tuple[str, ...]]:
    """The word sequences a grounded answer takes runs from (each evidence text, deduplicated),
    then each question option and yes / no as whole phrases."""
    out: list[tuple[str, ...]] = []
    for e in evidence:
        out += _clauses(e.text)
    options = question_options(question or "")
    out += [tuple(o.split()) for o in options]
    if is_yes_no(question or ""):
        out += [("yes",), ("no",)]
    return list(dict.fromkeys(out)) or [tuple(NOTHING_SEEN.split())]


#: Questions that ask for what a document prints at its top: its title or heading, or the name of
#: the shop, venue or publication it comes from ("What is the name of the shop?" on a receipt). A
#: person's "job title" is not a document's title (found on the held-out set, see the README).
_ASKS_TOP = re.compile(
    r"\b(?:(?<!job )(?<!job-)title|heading|headline|header|masthead|at the top|top of the|first line"
    r"|name of (?:the |this )?(?:shop|store|restaurant|caf[eé]|bar|business|company|venue|hotel|newspaper|magazine))\b",
    re.IGNORECASE)
#: Questions that ask for what a document prints last ("the line of code at the bottom").
_ASKS_BOTTOM = re.compile(r"\b(?:at the bottom|bottom of the|bottom line|last line|footer|foot of the)\b", re.IGNORECASE)
#: Cosine units of relevance (see :data:`mmreact.llms.grammar.RELEVANCE_WEIGHT`) a phrase from an
#: image's first (or last) line of text gains when the question asks for a document's top (or
#: bottom). Set from how documents are laid out, not tuned on a figure: 0.5 is half the scale of
#: cosine similarity, enough to beat a line that merely shares words with the question ("Thank you
#: for shopping!" for "the name of the shop") and no more.
LAYOUT_BONUS = 0.5


def asks_for_place(question: str | None) -> str | None:
    """``"top"`` when a question asks for what a document prints first (a title, a heading, a shop's
    name), ``"bottom"`` for what it prints last, else ``None``."""
    q = question or ""
    if _ASKS_BOTTOM.search(q):
        return "bottom"
    return "top" if _ASKS_TOP.search(q) else None


def layout_prior(evidence: Sequence[Evidence], phrases: Sequence[tuple[str, ...]],
                 question: str | None) -> list[float]:
    """Per phrase, :data:`LAYOUT_BONUS` when the question asks for a document's top (bottom) and the
    phrase comes from the first (last) line an OCR call read on its image; else 0. Printed documents
    put their title, and a receipt its shop's name, first."""
    place = asks_for_place(question)
    if place is None:
        return [0.0] * len(phrases)
    pick = min if place == "top" else max
    edge: dict[str | None, int] = {}
    for e in evidence:
        if e.kind == "text" and e.line is not None:
            edge[e.call] = pick(edge.get(e.call, e.line), e.line)
    chosen = {c for e in evidence if e.kind == "text" and e.line is not None and edge.get(e.call) == e.line
              for c in _clauses(e.text)}
    return [LAYOUT_BONUS if p in chosen else 0.0 for p in phrases]

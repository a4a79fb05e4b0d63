"""The reply formats of data generation: LLaVA's question/answer blocks, JSON, and paragraphs.

Each format is a :class:`~mmreact.llms.formats.TextFormat` (local backends decode inside it, so
every reply parses) plus a parser that reads replies from any backend.

LLaVA's block layout, as in its released prompts::

    Question:
    What is written at the top?
    ===
    Answer:
    The top line reads CORNER CAFE.
    ===
    Question:
    ...

Decisions:

- The parsers never raise. They return the pairs they could read and a list of problems (one
  phrase each); the structure filter turns problems into a rejection. They are lenient about
  what a careful writer would not mind (``\\r\\n``, blank lines, spaces around ``===``, the text on
  the ``Question:`` line itself, ``Q:``/``A:`` are *not* accepted) and strict about the rest:
  text outside a block, a question without an answer, two questions in a row.
- Questions and answers are single lines in the constrained formats (a 135M model given free
  line breaks wanders); the parser accepts several lines and joins them with spaces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..llms.formats import Alt, Chars, Lit, Node, Rep, Seq, TextFormat, lit, repeat, seq

__all__ = ["QA", "Parsed", "block_format", "json_format", "paragraph_format", "parse_blocks", "parse_json",
           "parse_paragraph", "render_blocks", "render_json"]

SEPARATOR = "==="
_SEP_LINE = re.compile(r"^\s*={3,}\s*$")
_HEAD = re.compile(r"^\s*(question|answer)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class QA:
    """One question and its answer."""

    question: str
    answer: str

    def to_dict(self) -> dict[str, str]:
        return {"question": self.question, "answer": self.answer}


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a parser read: the pairs, and what was wrong (empty when the reply is well formed)."""

    pairs: tuple[QA, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.pairs)


# -- languages -----------------------------------------------------------------------------------
def _text_line(max_chars: int) -> Node:
    """One line of text: starts with a non-space, at most ``max_chars`` characters, no line break."""
    first = Chars(" \t\r\n=", negate=True)  # "=" first would read as a separator line
    return Seq((first, Rep(Chars("\r\n", negate=True), 0, max(0, max_chars - 1))))


def block_format(min_pairs: int = 1, max_pairs: int = 4, *, question_chars: int = 160,
                 answer_chars: int = 400) -> TextFormat:
    """``min_pairs``..``max_pairs`` LLaVA blocks, questions and answers one line each."""
    if not 1 <= min_pairs <= max_pairs:
        raise ValueError(f"need 1 <= min_pairs <= max_pairs, got {min_pairs}, {max_pairs}")
    block = seq(lit("Question:\n"), _text_line(question_chars), lit(f"\n{SEPARATOR}\nAnswer:\n"),
                _text_line(answer_chars))
    more = repeat(seq(lit(f"\n{SEPARATOR}\n"), block), min_pairs - 1, max_pairs - 1)
    return TextFormat(seq(block, more), name=f"llava-blocks-{min_pairs}-{max_pairs}")


def _json_string(max_chars: int) -> Node:
    plain = Chars('"\\\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r', negate=True)
    escaped = Alt((Lit('\\"'), Lit("\\\\"), Lit("\\n")))
    return Seq((Lit('"'), Rep(Alt((plain, escaped)), 1, max_chars), Lit('"')))


def json_format(min_pairs: int = 1, max_pairs: int = 4, *, question_chars: int = 160,
                answer_chars: int = 400) -> TextFormat:
    """A JSON list of ``{"question": ..., "answer": ...}`` objects."""
    if not 1 <= min_pairs <= max_pairs:
        raise ValueError(f"need 1 <= min_pairs <= max_pairs, got {min_pairs}, {max_pairs}")
    obj = seq(lit('{"question": '), _json_string(question_chars), lit(', "answer": '), _json_string(answer_chars),
              lit("}"))
    more = repeat(seq(lit(",\n "), obj), min_pairs - 1, max_pairs - 1)
    return TextFormat(seq(lit("["), obj, more, lit("]")), name=f"qa-json-{min_pairs}-{max_pairs}")


def paragraph_format(max_chars: int = 1200, max_paragraphs: int = 2, *, min_chars: int = 20) -> TextFormat:
    """One to ``max_paragraphs`` paragraphs separated by a blank line, each one line of text."""
    first = Chars(" \t\r\n", negate=True)
    para = Seq((first, Rep(Chars("\r\n", negate=True), max(0, min_chars - 1), max_chars - 1)))
    return TextFormat(seq(para, repeat(seq(lit("\n\n"), para), 0, max_paragraphs - 1)), name="paragraph")


# -- rendering (few-shot examples in the requested format, and tests) -------------------------------
def render_blocks(pairs: list[QA] | tuple[QA, ...]) -> str:
    return f"\n{SEPARATOR}\n".join(f"Question:\n{p.question}\n{SEPARATOR}\nAnswer:\n{p.answer}" for p in pairs)


def render_json(pairs: list[QA] | tuple[QA, ...]) -> str:
    return "[" + ",\n ".join(json.dumps(p.to_dict(), ensure_ascii=False) for p in pairs) + "]"


# -- parsing ---------------------------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_blocks(text: str) -> Parsed:
    """Read LLaVA blocks; see the module notes for what is tolerated."""
    segments: list[list[str]] = [[]]
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _SEP_LINE.match(raw):
            segments.append([])
        else:
            segments[-1].append(raw)
    pairs: list[QA] = []
    problems: list[str] = []
    question: str | None = None
    for n, seg in enumerate(segments, start=1):
        body = "\n".join(seg).strip()
        if not body:
            if n not in (1, len(segments)):  # "===" twice in a row
                problems.append(f"block {n} is empty")
            continue
        # A block may hold both heads without a separator between them ("Question: ...\nAnswer: ...").
        parts = re.split(r"(?im)^\s*(?=(?:question|answer)\s*:)", body)
        for part in (p for p in parts if p.strip()):
            head = _HEAD.match(part)
            if head is None:
                problems.append(f"block {n} starts with neither 'Question:' nor 'Answer:'")
                continue
            value = _one_line(part[head.end():])
            if head.group(1).lower() == "question":
                if question is not None:
                    problems.append(f"block {n}: a question follows a question with no answer between")
                question = value
                if not value:
                    problems.append(f"block {n}: an empty question")
            else:
                if question is None:
                    problems.append(f"block {n}: an answer with no question before it")
                    continue
                if not value:
                    problems.append(f"block {n}: an empty answer")
                elif question:
                    pairs.append(QA(question, value))
                question = None
    if question is not None:
        problems.append("the last question has no answer (the reply may have been cut off)")
    if not pairs and not problems:
        problems.append("no question/answer block")
    return Parsed(tuple(pairs), tuple(problems))


def parse_json(text: str) -> Parsed:
    """Read a JSON list of ``{"question", "answer"}`` objects (a Markdown code fence is allowed)."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "too deeply nested"
        return Parsed((), (f"not valid JSON ({msg})",))
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return Parsed((), ("the JSON is not a list of question/answer objects",))
    pairs: list[QA] = []
    problems: list[str] = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) or \
                not isinstance(item.get("answer"), str):
            problems.append(f"item {i} is not an object with string 'question' and 'answer'")
            continue
        q, a = _one_line(item["question"]), _one_line(item["answer"])
        if not q or not a:
            problems.append(f"item {i} has an empty question or answer")
            continue
        pairs.append(QA(q, a))
    if not pairs and not problems:
        problems.append("no question/answer object")
    return Parsed(tuple(pairs), tuple(problems))


def parse_paragraph(text: str, question: str) -> Parsed:
    """A description reply: the whole text is the answer to ``question``."""
    paragraphs = [_one_line(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if not paragraphs:
        return Parsed((), ("the reply is empty",))
    return Parsed((QA(question, "\n\n".join(paragraphs)),))

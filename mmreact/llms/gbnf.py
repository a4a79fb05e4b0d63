"""A tiny expression tree for languages, rendered to GBNF (llama.cpp) and to a regular
expression (the ``regex`` module, whose ``partial=True`` matching checks prefixes).

Both renderings come from the same tree, so llama.cpp's grammar sampler and the transformers
logits processor accept exactly the same strings (the tests check this string by string with
llama.cpp's own grammar engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True, slots=True)
class Chars:
    """One character from ``chars`` (or, with ``negate``, any character except those)."""

    chars: str
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Seq:
    """The parts one after another."""

    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    """Any one of the options."""

    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Rep:
    """``node`` repeated ``lo`` to ``hi`` times."""

    node: Node
    lo: int
    hi: int


Node = Union[Lit, Chars, Seq, Alt, Rep]


def _gbnf_char(c: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"', "]": "\\]", "[": "\\[",
            "^": "\\^", "-": "\\-"}.get(c, c)


def to_gbnf(node: Node) -> str:
    if isinstance(node, Lit):
        return '"' + "".join(_gbnf_char(c) if c in '\n\r\t\\"' else c for c in node.text) + '"'
    if isinstance(node, Chars):
        return "[" + ("^" if node.negate else "") + "".join(_gbnf_char(c) for c in node.chars) + "]"
    if isinstance(node, Seq):
        return "(" + " ".join(to_gbnf(p) for p in node.parts) + ")"
    if isinstance(node, Alt):
        return "(" + " | ".join(to_gbnf(o) for o in node.options) + ")"
    return f"{to_gbnf(node.node)}{{{node.lo},{node.hi}}}"


def to_regex(node: Node) -> str:
    if isinstance(node, Lit):
        return re.escape(node.text)
    if isinstance(node, Chars):
        body = "".join("\\" + c if c in "\\]^-[" else c.encode("unicode_escape").decode() for c in node.chars)
        return "[" + ("^" if node.negate else "") + body + "]"
    if isinstance(node, Seq):
        return "(?:" + "".join(to_regex(p) for p in node.parts) + ")"
    if isinstance(node, Alt):
        return "(?:" + "|".join(to_regex(o) for o in node.options) + ")"
    return f"(?:{to_regex(node.node)}){{{node.lo},{node.hi}}}"


def max_chars(node: Node) -> int:
    if isinstance(node, Lit):
        return len(node.text)
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        return sum(max_chars(p) for p in node.parts)
    if isinstance(node, Alt):
        return max((max_chars(o) for o in node.options), default=0)
    return node.hi * max_chars(node.node)


def drop_prefix(node: Node, text: str) -> Node:
    """``node`` without the leading literal ``text`` (already written into the prompt)."""
    if not text:
        return node
    if isinstance(node, Lit) and node.text.startswith(text):
        return Lit(node.text[len(text):])
    if isinstance(node, Seq) and node.parts:
        first = drop_prefix(node.parts[0], text)
        rest = node.parts[1:]
        return Seq(rest if isinstance(first, Lit) and not first.text else (first, *rest))
    raise ValueError(f"the language does not start with {text!r}")

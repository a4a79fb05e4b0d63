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
    """``node`` repeated ``lo`` to ``hi`` times (``hi=None``: no upper bound)."""

    node: Node
    lo: int
    hi: int | None


Node = Union[Lit, Chars, Seq, Alt, Rep]


def _gbnf_char(c: str) -> str:
    if ord(c) < 0x20 and c not in "\n\r\t":
        return f"\\x{ord(c):02x}"
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
    if node.hi is None:
        inner = to_gbnf(node.node)
        return f"{inner}*" if node.lo == 0 else f"{inner}+" if node.lo == 1 else f"{inner}{{{node.lo},}}"
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
    return f"(?:{to_regex(node.node)}){{{node.lo},{'' if node.hi is None else node.hi}}}"


def max_chars(node: Node) -> int | None:
    """The longest string the language holds, or ``None`` when it is unbounded."""
    if isinstance(node, Lit):
        return len(node.text)
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        sizes = [max_chars(p) for p in node.parts]
        return None if any(n is None for n in sizes) else sum(n for n in sizes if n is not None)
    if isinstance(node, Alt):
        sizes = [max_chars(o) for o in node.options]
        return None if any(n is None for n in sizes) else max((n for n in sizes if n is not None), default=0)
    inner = max_chars(node.node)
    return None if node.hi is None or inner is None else node.hi * inner


#: Runs of one character class longer than this are what :func:`unbounded` frees.
LONG_RUN = 16


def unbounded(node: Node, over: int = LONG_RUN) -> Node:
    """``node`` with every run of one character class allowed more than ``over`` times made
    unbounded (``[^\\n]{0,999}`` becomes ``[^\\n]*``); every other part is kept. The language is the
    same but for the length of those runs, which the reply's token budget then bounds."""
    if isinstance(node, Rep):
        if isinstance(node.node, Chars) and node.hi is not None and node.hi > over:
            return Rep(node.node, node.lo, None)
        inner = unbounded(node.node, over)
        return node if inner is node.node else Rep(inner, node.lo, node.hi)
    if isinstance(node, Seq):
        parts = tuple(unbounded(p, over) for p in node.parts)
        return node if parts == node.parts else Seq(parts)
    if isinstance(node, Alt):
        options = tuple(unbounded(o, over) for o in node.options)
        return node if options == node.options else Alt(options)
    return node


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

"""Languages for free-text replies (``LLMRequest(kind="text", text_format=...)``).

A :class:`TextFormat` is written once as an expression tree (the nodes :class:`Lit`, :class:`Chars`,
:class:`Seq`, :class:`Alt` and :class:`Rep`, exported here, or the helpers below) and rendered
for each backend: GBNF for llama.cpp, a regular expression (the ``regex`` module, whose
``partial=True`` matching checks prefixes) for the transformers logits processor and for checking a
reply from a backend that cannot enforce it.

    >>> from mmreact.llms.formats import TextFormat, line, lit, one_of, seq
    >>> score = TextFormat(seq(line(max_chars=300), lit("\\nScore: "), one_of("0", "0.5", "1")), name="score")
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from ._gbnf import Alt, Chars, Lit, Node, Rep, Seq, max_chars, to_gbnf, to_regex

__all__ = ["Alt", "Chars", "Lit", "Node", "Rep", "Seq", "TextFormat", "any_text", "line", "lit", "one_of", "seq", "repeat"]


@dataclass(frozen=True)
class TextFormat:
    """A reply language: ``node`` is the whole reply (no prefill)."""

    node: Node
    name: str = "text"

    @functools.cached_property
    def gbnf(self) -> str:
        return f"root ::= {to_gbnf(self.node)}\n"

    @functools.cached_property
    def regex(self) -> str:
        return to_regex(self.node)

    @functools.cached_property
    def max_chars(self) -> int | None:
        """The longest reply the language holds (``None``: unbounded; ``max_tokens`` ends it)."""
        return max_chars(self.node)

    @functools.cached_property
    def compiled(self) -> Any:
        import regex

        return regex.compile(self.regex, regex.DOTALL)

    #: Text a backend writes into the prompt before decoding (none, for free-text formats).
    prefill: ClassVar[str] = ""

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a whole reply of the language."""
        return self.compiled.fullmatch(text) is not None

    def accepts_prefix(self, text: str) -> bool:
        """Whether ``text`` can still be completed into a reply of the language."""
        return self.compiled.fullmatch(text, partial=True) is not None


# -- small builders ----------------------------------------------------------------------------
def lit(text: str) -> Node:
    return Lit(text)


def seq(*parts: Node) -> Node:
    return Seq(tuple(parts))


def one_of(*options: str | Node) -> Node:
    return Alt(tuple(Lit(o) if isinstance(o, str) else o for o in options))


def repeat(node: Node, lo: int = 0, hi: int | None = None) -> Node:
    return Rep(node, lo, hi)


def line(min_chars: int = 1, max_chars: int | None = None) -> Node:
    """Text without a line break: starts with a non-space, ``min_chars``..``max_chars`` long."""
    first = Chars(" \t\r\n", negate=True)
    rest = Chars("\r\n", negate=True)
    if min_chars < 1:
        return Rep(Seq((first, Rep(rest, 0, None if max_chars is None else max(0, max_chars - 1)))), 0, 1)
    return Seq((first, Rep(rest, min_chars - 1, None if max_chars is None else max(min_chars - 1, max_chars - 1))))


def any_text(max_chars: int | None = None) -> Node:
    """Any text at all (line breaks included), at most ``max_chars`` characters."""
    return Rep(Chars("\x00", negate=True), 0, max_chars)

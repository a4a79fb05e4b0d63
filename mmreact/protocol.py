"""LLM text -> tool calls | final answer, else a parse error the model can read.

The text-ReAct format::

    Thought: I should read the text in the image.
    Action: ocr(image_1)
    Action: detect(image=image_2, min_confidence=0.5)

or, when done::

    Thought: The OCR shows the total.
    Final Answer: 7.75

Several ``Action:`` lines in one reply are several calls in one step. Arguments are Python-style
literals; a bare name such as ``image_1`` is read as the string ``"image_1"``. The LangChain form
``Action: ocr`` + ``Action Input: image_1`` (or a JSON object) is accepted too. When a reply holds
both, the marker that comes first wins: actions run and a premature final answer after them is
ignored, and anything after an ``Observation:`` the model wrote itself is dropped (the engine, not
the model, writes observations).
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

_MARKER = re.compile(
    r"^[ \t>*#`-]*(?P<kind>Thought|Action Input|Action(?:\s*\d+)?|Final Answer|Observation)\s*[:：]\s*",
    re.IGNORECASE | re.MULTILINE,
)
_SIMPLE = re.compile(r"^([A-Za-z_]\w*)\s*\(\s*([A-Za-z_]\w*)?\s*\)$")
_ids = itertools.count(1)


class ParseError(ValueError):
    """The reply could not be read; the message is sent back to the model."""


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call as the model wrote it (arguments not yet validated)."""

    tool: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def text(self) -> str:
        parts = [format_value(a) for a in self.args] + [f"{k}={format_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.tool}({', '.join(parts)})"


def format_value(value: Any) -> str:
    """How an argument is written in a call: handles bare, everything else as a literal."""
    if isinstance(value, str) and re.fullmatch(r"image_\d+", value):
        return value
    return repr(value)


@dataclass(frozen=True, slots=True)
class Parsed:
    thought: str | None
    calls: tuple[Call, ...] = ()
    final_answer: str | None = None


def new_call_id() -> str:
    return f"call_{next(_ids)}"


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name):
        return node.id
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ParseError(f"argument `{ast.unparse(node)}` is not a literal value.") from None


def parse_call(text: str) -> Call:
    """Parse ``name(arg, key=value)``."""
    text = text.strip().strip("`").strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    m = _SIMPLE.match(text)
    if m:
        return Call(m.group(1), (m.group(2),) if m.group(2) else (), {}, new_call_id())
    if re.fullmatch(r"[A-Za-z_]\w*", text):
        return Call(text, (), {}, new_call_id())
    if len(text) > 4000:
        raise ParseError("the Action line is too long.")
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ParseError(f"could not read the call `{text[:200]}`; write it as tool_name(image_1, key=value).") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ParseError(f"`{text[:200]}` is not a tool call; write it as tool_name(image_1, key=value).")
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        raise ParseError("*args and **kwargs are not allowed in a tool call.")
    args = tuple(_literal(a) for a in node.args)
    kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg is not None}
    return Call(node.func.id, args, kwargs, new_call_id())


def _action_input(name: str, raw: str) -> Call:
    raw = raw.strip().strip("`").strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise ParseError(f"Action Input for {name} is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ParseError(f"Action Input for {name} must be a JSON object.")
        return Call(name, (), data, new_call_id())
    if not raw:
        return Call(name, (), {}, new_call_id())
    value = raw.strip("\"'")
    return Call(name, (value,), {}, new_call_id())


def _call_span(body: str) -> str:
    """The call expression at the start of an Action body (up to its closing parenthesis)."""
    first_line = body.split("\n", 1)[0]
    if "(" not in first_line:
        return first_line.strip()
    depth, quote, escaped = 0, "", False
    for i, ch in enumerate(body):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return body[: i + 1]
    return body.strip()


def parse(text: str) -> Parsed:
    """Read one model reply. Raises :class:`ParseError` with a message for the model."""
    markers = list(_MARKER.finditer(text))
    thought_parts: list[str] = []
    first_text = text[: markers[0].start()].strip() if markers else text.strip()
    if first_text:
        thought_parts.append(first_text)
    calls: list[Call] = []
    final: str | None = None
    for i, m in enumerate(markers):
        kind = m.group("kind").lower()
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        body = text[m.end(): end].strip()
        if kind == "observation":
            break
        if kind == "thought":
            if calls or final is not None:
                break
            if body:
                thought_parts.append(body)
        elif kind == "final answer":
            if calls:
                break  # actions came first: run them, ignore the premature answer
            final = body
            # The answer runs to the end, except for a self-written Observation.
            obs = re.search(r"^\s*Observation\s*:", text[m.end():], re.IGNORECASE | re.MULTILINE)
            final = text[m.end(): m.end() + obs.start()].strip() if obs else text[m.end():].strip()
            break
        elif kind == "action input":
            if not calls:
                raise ParseError("'Action Input:' must follow an 'Action:' line.")
            last = calls[-1]
            if last.args or last.kwargs:
                raise ParseError(f"{last.tool} got both arguments in parentheses and an Action Input.")
            calls[-1] = _action_input(last.tool, body)
        else:  # action
            calls.append(parse_call(_call_span(body)))
    thought = "\n".join(thought_parts).strip() or None
    if final is not None:
        if not final:
            raise ParseError("the Final Answer is empty; write the answer after 'Final Answer:'.")
        return Parsed(thought, (), final)
    if not calls:
        raise ParseError(
            "your reply has neither an 'Action: tool_name(image_1)' line nor a 'Final Answer: ...' line."
        )
    return Parsed(thought, tuple(calls), None)

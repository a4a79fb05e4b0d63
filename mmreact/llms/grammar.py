"""The step language for constrained decoding: one ReAct step the engine can always parse.

A reply is exactly one of::

    Thought: <1-25 words, no newline>
    Action: <one allowed call>

    Thought: <1-25 words, no newline>
    Final Answer: <1-200 characters, no newline>

Decisions (they keep a 135M-parameter model on the rails, and bigger models lose nothing):

* Allowed calls are enumerated from ``request.tools`` and ``request.handles``: image parameters
  take only existing handles; required arguments are written positionally, exactly as
  :meth:`Tool.canonical` writes them, so a call whose canonical text is in
  ``request.done_calls`` is left out. When every call is done, only ``Final Answer`` remains.
* Optional parameters are never offered (tools run with their defaults).
* Required non-image parameters: ``Literal[...]``, ``bool`` and ``None`` values are enumerated
  (so done calls are excluded); ``str`` (a single-quoted literal without quotes, backslashes or
  newlines, at most 60 characters), ``int`` and ``float`` are free-form literals, and a tool with
  such a parameter may repeat a done call (the engine answers repeats from memory). A tool with a
  parameter of any other type (``list[...]``) is left out of the grammar. So is a tool whose
  enumerated combinations pass :data:`MAX_COMBINATIONS`, which falls back to free-form
  alternatives without the done-call exclusion.
* One call per step: small models handle one call at a time best.
* ``force_action``: while the current question has no observation yet (the last message is the
  user's), a reply must be an Action if any call is allowed. A tiny model otherwise answers from
  the question alone and invents the answer.
* ``max_calls_per_image``: optionally, after that many observations per image in the current
  question, only ``Final Answer`` is allowed (the embedded 135M default uses 1: a second
  observation mostly makes it answer from the wrong one).
* ``decide_first`` (two passes, see :func:`run_step`): the model first writes only
  ``Action: <call>`` or ``Final Answer:``, then the thought and the chosen ending. Measured with
  SmolLM2-135M: after a thought it nearly always took the first tool listed (``caption`` for
  "what is the total on this receipt?"); deciding first it took ``ocr`` for receipts and signs
  and ``caption`` for "what animal is this?".

The language is built once as a small expression tree and rendered twice, to GBNF (llama.cpp)
and to a regular expression for the ``regex`` module (whose ``partial=True`` matching drives the
transformers logits processor), so both backends accept the same strings. Building is cached by
(tools, handles, done calls, options).
"""

from __future__ import annotations

import functools
import itertools
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Union, get_args, get_origin

from ..tools import Param, Tool
from .base import LLMRequest, Message
from .gbnf import Alt, Chars, Lit, Node, Rep, Seq, drop_prefix, max_chars, to_gbnf, to_regex

__all__ = ["Generated", "Lit", "StepGrammar", "StepOptions", "describe", "run_step", "step_grammar"]

MAX_COMBINATIONS = 256
_SPACE = " \t\r\n"


# -- argument forms ------------------------------------------------------------------------
_NONSPACE = Chars(_SPACE, negate=True)
_DIGIT = Chars("0123456789")
_INT = Seq((Rep(Lit("-"), 0, 1), Rep(_DIGIT, 1, 9)))
_FLOAT = Seq((_INT, Rep(Seq((Lit("."), Rep(_DIGIT, 1, 6))), 0, 1)))
_STR = Seq((Lit("'"), Rep(Chars("'\\\r\n", negate=True), 0, 60), Lit("'")))


@dataclass(frozen=True, slots=True)
class _Form:
    """How one required argument may be written: a finite list of values, or a free pattern."""

    values: tuple[Any, ...] | None
    free: Node | None = None


def _scalar_form(annotation: Any) -> _Form | None:
    if annotation is bool:
        return _Form((True, False))
    if annotation is type(None):
        return _Form((None,))
    if get_origin(annotation) is Literal:
        return _Form(tuple(get_args(annotation)))
    if annotation is int:
        return _Form(None, _INT)
    if annotation is float:
        return _Form(None, _FLOAT)
    if annotation is str:
        return _Form(None, _STR)
    if get_origin(annotation) in (Union, types.UnionType):
        forms = [_scalar_form(a) for a in get_args(annotation)]
        if any(f is None for f in forms):
            return None
        if all(f.values is not None for f in forms if f):
            return _Form(tuple(v for f in forms if f and f.values for v in f.values))
        options: list[Node] = []
        for f in forms:
            assert f is not None
            options.extend([Lit(_literal(v)) for v in f.values] if f.values is not None else [f.free])  # type: ignore[list-item]
        return _Form(None, Alt(tuple(options)))
    return None  # lists and anything else: not constrained


def _literal(value: Any) -> str:
    from ..protocol import format_value

    return format_value(value)


def _param_form(p: Param, handles: tuple[str, ...]) -> _Form | None:
    if p.is_image:
        return _Form(handles)
    return _scalar_form(p.annotation)


def tool_calls(tool: Tool, handles: tuple[str, ...], done: frozenset[str]) -> Node | None:
    """The allowed calls of one tool, or ``None`` when it has none (or cannot be constrained)."""
    required = [p for p in tool.params if p.required]
    forms = [_param_form(p, handles) for p in required]
    if any(f is None for f in forms):
        return None
    defaults = {p.name: p.default for p in tool.params if not p.required}
    finite = [f for f in forms if f is not None and f.values is not None]
    count = 1
    for f in finite:
        count *= len(f.values or ())
    if len(finite) == len(forms) and count <= MAX_COMBINATIONS:
        texts = []
        for combo in itertools.product(*(f.values or () for f in forms if f is not None)):
            text = tool.canonical({**defaults, **{p.name: v for p, v in zip(required, combo, strict=True)}})
            if text not in done:
                texts.append(text)
        return Alt(tuple(Lit(t) for t in texts)) if texts else None
    parts: list[Node] = [Lit(f"{tool.name}(")]
    for i, form in enumerate(forms):
        assert form is not None
        if i:
            parts.append(Lit(", "))
        if form.values is not None:
            if not form.values:
                return None
            parts.append(Alt(tuple(Lit(_literal(v)) for v in form.values)))
        else:
            assert form.free is not None
            parts.append(form.free)
    parts.append(Lit(")"))
    return Seq(tuple(parts))


# -- the step language ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StepOptions:
    """Knobs of the step language and of constrained decoding (see the module docstring)."""

    thought_words: int = 25
    word_chars: int = 20
    answer_chars: int = 200
    force_action: bool = True
    max_calls_per_image: int | None = None
    decide_first: bool = True


Mode = Literal["step", "decision", "thought"]


@dataclass(frozen=True)
class StepGrammar:
    """One request's language, rendered to GBNF (llama.cpp) and to a regex (``regex`` module).

    ``mode`` is ``"step"`` (a whole reply), ``"decision"`` (the first pass of
    :func:`run_step`: ``Action: <call>`` or the bare marker ``Final Answer:``) or ``"thought"``
    (just ``Thought: ...`` and its newline, when the ending is already fixed). ``prefill`` is
    text a backend has already put at the start of the assistant message: the grammar then
    matches only what follows it.
    """

    calls: tuple[Node, ...]
    allows_final: bool
    options: StepOptions = StepOptions()
    mode: Mode = "step"
    prefill: str = ""

    @property
    def allows_action(self) -> bool:
        return bool(self.calls)

    @property
    def fixed_tail(self) -> str | None:
        """The ending when it is settled (one enumerated call, no answer), else ``None``."""
        if len(self.calls) == 1 and isinstance(self.calls[0], Lit) and not self.allows_final:
            return f"Action: {self.calls[0].text}"
        return None

    @functools.cached_property
    def _rules(self) -> dict[str, Node]:
        o = self.options
        rules: dict[str, Node] = {}
        if self.mode != "decision":
            word = Rep(_NONSPACE, 1, o.word_chars)
            rules["thought"] = Seq((Lit("Thought: "), word, Rep(Seq((Lit(" "), word)), 0, o.thought_words - 1),
                                    Lit("\n")))
        if self.mode == "thought":
            return rules
        if self.calls:
            rules["call"] = Alt(self.calls)
        if self.allows_final:
            rules["final"] = Lit("Final Answer:") if self.mode == "decision" else Seq(
                (Lit("Final Answer: "), _NONSPACE, Rep(Chars("\r\n", negate=True), 0, o.answer_chars - 1)))
        if not self.calls and not self.allows_final:
            raise ValueError("a step grammar needs an Action or a Final Answer")
        return rules

    @functools.cached_property
    def _root(self) -> tuple[Node, str]:
        """The language as one tree, and the GBNF of its root rule (prefill dropped from both)."""
        rules = self._rules
        ends: list[Node] = []
        ends_gbnf: list[str] = []
        if self.mode != "thought":
            if self.calls:
                ends.append(Seq((Lit("Action: "), rules["call"])))
                ends_gbnf.append('"Action: " call')
            if self.allows_final:
                ends.append(rules["final"])
                ends_gbnf.append("final")
        ending: list[Node] = [ends[0] if len(ends) == 1 else Alt(tuple(ends))] if ends else []
        head: list[Node] = [rules["thought"]] if "thought" in rules else []
        tree = drop_prefix(Seq((*head, *ending)), self.prefill)
        root_gbnf = " ".join((["thought"] if head else []) + (["(" + " | ".join(ends_gbnf) + ")"] if ends else []))
        return tree, root_gbnf

    @functools.cached_property
    def gbnf(self) -> str:
        rules = dict(self._rules)
        if "thought" in rules:
            rules["thought"] = drop_prefix(rules["thought"], self.prefill)
        elif self.prefill:
            raise ValueError("only a language that starts with a thought can be prefilled")
        lines = [f"root ::= {self._root[1]}"] + [f"{n} ::= {to_gbnf(node)}" for n, node in rules.items()]
        return "\n".join(lines) + "\n"

    @functools.cached_property
    def regex(self) -> str:
        return to_regex(self._root[0])

    @functools.cached_property
    def max_chars(self) -> int:
        return max_chars(self._root[0])

    @functools.cached_property
    def compiled(self) -> Any:
        import regex

        return regex.compile(self.regex, regex.DOTALL)

    def accepts(self, text: str) -> bool:
        """Whether ``text`` (what follows ``prefill``) completes a reply of the language."""
        return self.compiled.fullmatch(text) is not None

    def accepts_prefix(self, text: str) -> bool:
        """Whether ``text`` can still be completed into a reply of the language."""
        return self.compiled.fullmatch(text, partial=True) is not None

    # -- the two-pass mode -------------------------------------------------------------------
    def decision(self) -> StepGrammar | None:
        """The decision language, or ``None`` when there is nothing to decide."""
        if self.mode != "step" or self.fixed_tail is not None or (not self.calls and self.allows_final):
            return None
        return replace(self, mode="decision", prefill="")

    def resolve(self, text: str) -> str | None:
        """In the decision language: the one choice ``text`` already commits to, else ``None``."""
        if self.mode != "decision" or not text:
            return None
        if self.accepts(text):
            return text
        if not all(isinstance(c, Lit) for c in self.calls):
            return None
        choices = [f"Action: {c.text}" for c in self.calls if isinstance(c, Lit)]
        choices += ["Final Answer:"] if self.allows_final else []
        hits = [c for c in choices if c.startswith(text)]
        return hits[0] if len(hits) == 1 else None

    def choose(self, decided: str) -> StepGrammar:
        """The whole-reply language with its ending fixed to what the decision pass wrote."""
        text = decided.strip()
        if self.allows_final and text.startswith("Final Answer"):
            return replace(self, calls=(), mode="step")
        call = text.removeprefix("Action:").strip()
        if not self.calls or not call:
            return replace(self, mode="step")
        return replace(self, calls=(Lit(call),), allows_final=False, mode="step")


def _turn_state(messages: Sequence[Message]) -> tuple[bool, int]:
    """(no observation yet in this question, observations in this question)."""
    observations = 0
    for m in reversed(messages):
        if m.role == "user":
            break
        if m.role == "observation":
            observations += 1
    fresh = bool(messages) and messages[-1].role == "user"
    return fresh, observations


def step_grammar(request: LLMRequest, options: StepOptions = StepOptions()) -> StepGrammar:
    """The grammar for one request (cached by tools, handles, done calls and options)."""
    fresh, observations = _turn_state(request.messages)
    cap = options.max_calls_per_image
    only_final = cap is not None and observations >= cap * max(1, len(request.handles))
    force = options.force_action and fresh
    return _build(tuple(request.tools), tuple(request.handles), frozenset(request.done_calls),
                  force, only_final, options)


@functools.lru_cache(maxsize=512)
def _build(tools: tuple[Tool, ...], handles: tuple[str, ...], done: frozenset[str], force: bool,
           only_final: bool, options: StepOptions) -> StepGrammar:
    calls: list[Node] = []
    if not only_final:
        for t in tools:
            node = tool_calls(t, handles, done)
            if node is not None:
                calls.extend(node.options if isinstance(node, Alt) else (node,))
    return StepGrammar(tuple(calls), allows_final=not (force and calls), options=options)


@dataclass(frozen=True, slots=True)
class Generated:
    """What one constrained generation pass returns (``text`` excludes the prefill)."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


#: ``generate(grammar, stop_when, stream)``: one pass. The backend writes ``grammar.prefill`` at
#: the start of the assistant message, decodes under ``grammar``, stops early once
#: ``stop_when(text so far)`` is true, and (when ``stream``) passes each new piece to on_text.
Generate = Callable[[StepGrammar, Callable[[str], Any] | None, bool], Generated]
PREFILL = "Thought:"


def run_step(grammar: StepGrammar, generate: Generate, *, on_text: Callable[[str], None] | None = None,
             prefill: bool = True) -> tuple[Generated, dict[str, Any]]:
    """Drive one constrained step; returns the whole reply text and token counts.

    1. With ``options.decide_first`` and a real choice to make, a *decision* pass writes only
       ``Action: <call>`` or ``Final Answer:`` and stops as soon as the choice is unambiguous
       (a tiny model picks tools far better from the question itself than after a thought it
       half-copied from the prompt).
    2. The reply pass writes the thought and, for an answer, the answer. When the ending is a
       settled call, decoding stops at the thought's newline and the ``Action:`` line is
       appended as text: forced tokens cost a forward pass each and carry no choice.
    3. With ``prefill``, ``Thought:`` goes into the prompt as the start of the assistant
       message instead of being decoded (forced, it comes out as odd one-letter tokens).

    ``on_text`` receives the reply as it is written (prefill and appended line included).
    Token counts: the prompt once, the completion tokens of both passes.
    """
    meta: dict[str, Any] = {}
    spent = 0
    decision = grammar.decision() if grammar.options.decide_first else None
    if decision is not None:
        first = generate(decision, decision.resolve, False)
        spent = first.completion_tokens or 0
        choice = decision.resolve(first.text)
        meta["decision"] = choice or first.text
        if choice is not None:
            grammar = grammar.choose(choice)
    tail = grammar.fixed_tail
    reply = replace(grammar, mode="thought") if tail else grammar
    if prefill:
        reply = replace(reply, prefill=PREFILL)
        if on_text is not None:
            on_text(PREFILL)
    out = generate(reply, (lambda t: t.endswith("\n")) if tail else None, True)
    text = reply.prefill + out.text
    if tail:
        text = (text if text.endswith("\n") else text + "\n") + tail
        if on_text is not None:
            on_text(tail)
    total = None if out.completion_tokens is None else out.completion_tokens + spent
    return Generated(text, out.prompt_tokens, total), meta


def describe(node: Node) -> str:
    """A readable form of a call alternative: its text, or its GBNF when it is a pattern."""
    return node.text if isinstance(node, Lit) else to_gbnf(node)

"""The step language for constrained decoding: one ReAct step the engine can always parse.

A reply is one of::

    Thought: <the model's reasoning, one line>          (only with ``StepOptions.thought``)
    Action: <an allowed call>
    Action: <another allowed call>                     (up to ``max_calls`` lines)

    Thought: <the model's reasoning, one line>          (only with ``StepOptions.thought``)
    Final Answer: <the answer>

A thought, when there is one, comes first and is written by the model before it decides, as in
classic ReAct; the trace never shows a thought written after the decision or without it in view.
Backends that decide without a thought (``thought=False``) write no thought at all, and the
trace says so (:attr:`~mmreact.trace.StepRecord.decided`).

Settings (:class:`StepOptions`) belong to the backend, not to the language:

* :data:`FULL` (every ``gguf:`` and ``hf:`` model unless told otherwise): the whole protocol, a
  thought first (one line, up to 1,000 characters), up to four calls per step, optional
  arguments, answers of up to 2,000 characters over several lines; the model may answer without
  a tool. The bounds guarantee that every reply ends (the token budget grows to fit them).
  In-process backends keep them (llama.cpp checks the grammar token by token, llguidance builds
  masks lazily: neither pays for a long bound); model servers are sent the language with the
  long runs unbounded and the same token budget (:func:`mmreact.llms._server_grammar.served`).
* :data:`EMBEDDED` (the embedded 135M default): the strict settings that keep a tiny model on
  the rails: no thought (measured: after a thought SmolLM2-135M nearly always called the first
  tool listed; deciding directly it picks by the question), one call per step without optional
  arguments, a first step that must call a tool while one is allowed (it otherwise invents an
  answer from the question alone), and after one observation per image only an answer (a second
  observation mostly made it answer from the wrong one). Answers: one line, at most 200
  characters.

The language is built from ``request.tools`` and ``request.handles``:

* Image parameters take only existing handles; required arguments are written positionally,
  exactly as :meth:`Tool.canonical` writes them, so a call whose canonical text is in
  ``request.done_calls`` is left out (only calls written without optional arguments can be left
  out; the engine answers any other repeat from memory). When every call is done and nothing
  else can be asked, only ``Final Answer`` remains.
* Required non-image parameters: ``Literal[...]``, ``bool`` and ``None`` values are enumerated;
  ``str`` (a single-quoted literal without quotes, backslashes or newlines, at most 60 characters),
  ``int``, ``float``, unions and lists of those (up to 16 items) are free-form literals: every
  type a tool may declare. A tool whose enumerated combinations pass :data:`MAX_COMBINATIONS`
  falls back to free-form alternatives.
* Optional arguments (with ``optional_args``) follow the required ones as ``name=value``, in the
  order the tool declares them.

It is built once per request as a small expression tree and rendered twice, to GBNF (llama.cpp)
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
from ._gbnf import (
    Alt,
    Chars,
    Lit,
    Node,
    Rep,
    Seq,
    drop_prefix,
    max_chars,
    to_gbnf,
    to_regex,
    unbounded,
)
from .base import Completion, LLMRequest, Message

__all__ = ["EMBEDDED", "FULL", "Generated", "Lit", "LocalSteps", "StepGrammar", "StepOptions", "describe",
           "run_step", "step_grammar"]

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
    if get_origin(annotation) in (list, tuple):
        inner = get_args(annotation)
        item = _scalar_form(inner[0]) if inner and inner[0] is not Ellipsis else None
        if item is None:
            return None
        value = Alt(tuple(Lit(_literal(v)) for v in item.values)) if item.values is not None else item.free
        assert value is not None
        return _Form(None, Seq((Lit("["), Rep(Seq((value, Rep(Seq((Lit(", "), value)), 0, 15))), 0, 1), Lit("]"))))
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


def _optional_tail(optional: Sequence[tuple[Param, _Form]], first: bool = False) -> Node | None:
    """``, name=value`` for one or more optional parameters, in declared order (``None``: none);
    with ``first``, the first one written has no leading comma (the call has no required argument)."""
    def kv(p: Param, f: _Form, lead: str = ", ") -> Node:
        value = Alt(tuple(Lit(_literal(v)) for v in f.values)) if f.values is not None else f.free
        assert value is not None
        return Seq((Lit(f"{lead}{p.name}="), value))

    firsts: list[Node] = []
    for i, (p, f) in enumerate(optional):
        rest = [Rep(kv(q, g), 0, 1) for q, g in optional[i + 1:]]
        firsts.append(Seq((kv(p, f, "" if first else ", "), *rest)))
    return (firsts[0] if len(firsts) == 1 else Alt(tuple(firsts))) if firsts else None


def tool_calls(tool: Tool, handles: tuple[str, ...], done: frozenset[str], optional_args: bool = False) -> Node | None:
    """The allowed calls of one tool, or ``None`` when it has none (or cannot be constrained)."""
    required = [p for p in tool.params if p.required]
    forms = [_param_form(p, handles) for p in required]
    if any(f is None for f in forms) or (tool.image_params and not handles):
        return None
    optional: list[tuple[Param, _Form]] = []
    if optional_args:
        for p in tool.params:
            form = None if p.required else _param_form(p, handles)
            if form is not None and not (form.values is not None and not form.values):
                optional.append((p, form))
    tail = _optional_tail(optional, first=not required)
    defaults = {p.name: p.default for p in tool.params if not p.required}
    finite = [f for f in forms if f is not None and f.values is not None]
    count = 1
    for f in finite:
        count *= len(f.values or ())
    options: list[Node] = []
    if len(finite) == len(forms) and count <= MAX_COMBINATIONS:
        combos = list(itertools.product(*(f.values or () for f in forms if f is not None)))
        for combo in combos:
            text = tool.canonical({**defaults, **{p.name: v for p, v in zip(required, combo, strict=True)}})
            if text not in done:
                options.append(Lit(text))
        if tail is not None:  # the same calls with options: never "done" (the engine answers repeats)
            for combo in combos:
                plain = tool.canonical({**defaults, **{p.name: v for p, v in zip(required, combo, strict=True)}})
                options.append(Seq((Lit(plain[:-1]), tail, Lit(")"))))
        return Alt(tuple(options)) if options else None
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
    if tail is not None:
        parts.append(Rep(tail, 0, 1))
    parts.append(Lit(")"))
    return Seq(tuple(parts))


# -- the step language ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StepOptions:
    """Knobs of the step language (see the module docstring, :data:`FULL` and :data:`EMBEDDED`).

    Args:
        thought: the reply starts with ``Thought: ...`` (classic ReAct); ``False``: the model
            writes only its decision, and no thought exists.
        thought_chars: longest thought (``None``: no limit but the reply's token budget, which
            can cut a reply short before its ending: keep a bound so every reply completes).
        answer_chars: longest final answer (``None``: as for thoughts).
        multiline_answer: whether the answer may hold line breaks.
        max_calls: ``Action:`` lines per step (they run concurrently).
        optional_args: whether calls may set optional arguments.
        force_action: while the question has no observation yet, a reply must call a tool if any
            call is allowed.
        max_calls_per_image: after this many observations per image in the current question,
            only ``Final Answer`` is allowed (``None``: no limit).
    """

    thought: bool = True
    thought_chars: int | None = 1000
    answer_chars: int | None = 2000
    multiline_answer: bool = True
    max_calls: int = 4
    optional_args: bool = True
    force_action: bool = False
    max_calls_per_image: int | None = None

    def __post_init__(self) -> None:
        for name in ("thought_chars", "answer_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None), got {value}")
        if self.max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {self.max_calls}")


#: Every local model unless told otherwise: the whole protocol.
FULL = StepOptions()
#: The embedded SmolLM2-135M default: the strict settings that keep a tiny model on the rails.
EMBEDDED = StepOptions(thought=False, answer_chars=200, multiline_answer=False, max_calls=1,
                       optional_args=False, force_action=True, max_calls_per_image=1)

class LocalSteps:
    """What a local backend that decodes agent steps under :class:`StepOptions` tells the agent
    (``self.options``, ``self.constrained``): it runs on this machine, whether its steps start with
    a thought, and whether its first step must act."""

    options: StepOptions
    constrained: bool
    runs_locally = True

    @property
    def writes_thoughts(self) -> bool:
        return self.options.thought or not self.constrained

    @property
    def first_step_acts(self) -> bool:
        return self.constrained and self.options.force_action

    @property
    def grounds_answers(self) -> bool:
        return self.constrained

    @property
    def grounds_by_default(self) -> bool:
        """Grounded answers by default for the small-model settings (:data:`EMBEDDED`), where they
        measured better; a model with the whole protocol (:data:`FULL`) answers freely and is checked
        (a grounded answer cannot compute, translate or know; see :mod:`mmreact.grounding`)."""
        return self.constrained and self.options == EMBEDDED

    def forced_step(self, request: LLMRequest) -> Completion | None:
        """The step the engine writes when the grammar allows exactly one reply, else None. It
        needs no model, so a backend answers it before loading or locking one: a forced first call
        starts at once, while the model still loads (and its trace shows no model time)."""
        if request.kind != "react" or not self.constrained:
            return None
        grammar = step_grammar(request, self.options)
        if grammar.forced_reply is None:
            return None
        out, meta = run_step(grammar, _no_model, on_text=request.on_text)
        return Completion(out.text, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                          meta=meta)


def _no_model(*_: Any) -> Generated:
    raise AssertionError("a forced step calls no model")


#: ``"step"``: a whole reply. ``"thought"``: only ``Thought: ...`` and its newline (the ending is
#: settled and is appended as text). ``"answer"``: only the answer text after ``Final Answer:``.
Mode = Literal["step", "thought", "answer"]
FINAL = "Final Answer:"


@dataclass(frozen=True)
class StepGrammar:
    """One request's language, rendered to GBNF (llama.cpp) and to a regex (``regex`` module).

    ``calls`` are the alternatives of one ``Action:`` line. ``prefill`` is text a backend has
    already put at the start of the assistant message (``Thought:`` or ``Final Answer:``): the
    grammar then matches only what follows it.
    """

    calls: tuple[Node, ...]
    allows_final: bool
    options: StepOptions = StepOptions()
    mode: Mode = "step"
    prefill: str = ""
    #: Grounded answers: the word sequences the answer is a run of (``None``: a free answer).
    phrases: tuple[tuple[str, ...], ...] | None = None
    #: ``False``: the free-text runs (thought, answer, string arguments) have no length bound in
    #: the language itself (:func:`~mmreact.llms._gbnf.unbounded`); the reply's token budget bounds
    #: them instead. What model servers are sent (:func:`mmreact.llms._server_grammar.served`).
    bounded: bool = True

    @property
    def allows_action(self) -> bool:
        return bool(self.calls)

    @property
    def choices(self) -> int:
        """How many different first steps the language allows (each call alternative, the answer)."""
        return len(self.calls) + (1 if self.allows_final else 0)

    @property
    def fixed_tail(self) -> str | None:
        """The ending when it is settled (one enumerated call, no answer, one call per step), else ``None``."""
        if (len(self.calls) == 1 and isinstance(self.calls[0], Lit) and not self.allows_final
                and self.options.max_calls == 1):
            return f"Action: {self.calls[0].text}"
        return None

    @property
    def forced_reply(self) -> str | None:
        """The whole reply when the language holds exactly one (no thought, a settled call)."""
        return self.fixed_tail if not self.options.thought else None

    # -- the tree ------------------------------------------------------------------------------
    def _answer(self) -> Node:
        o = self.options
        if self.phrases:
            return grounded_answer(self.phrases, o.answer_chars)
        rest = Chars("\r\n", negate=True) if not o.multiline_answer else Chars("\x00", negate=True)
        return Seq((_NONSPACE, Rep(rest, 0, None if o.answer_chars is None else o.answer_chars - 1)))

    @functools.cached_property
    def _rules(self) -> dict[str, Node]:
        rules = self._bounded_rules()
        return rules if self.bounded else {name: unbounded(node) for name, node in rules.items()}

    def _bounded_rules(self) -> dict[str, Node]:
        o = self.options
        rules: dict[str, Node] = {}
        if self.mode == "answer":
            rules["answer"] = self._answer()
            return rules
        if o.thought:
            rest = Rep(Chars("\r\n", negate=True), 0, None if o.thought_chars is None else o.thought_chars - 1)
            rules["thought"] = Seq((Lit("Thought: "), _NONSPACE, rest, Lit("\n")))
        if self.mode == "thought":
            if not o.thought:
                raise ValueError("a thought-only language needs StepOptions(thought=True)")
            return rules
        if not self.calls and not self.allows_final:
            raise ValueError("a step grammar needs an Action or a Final Answer")
        if self.calls:
            rules["call"] = Alt(self.calls)
        if self.allows_final:
            rules["answer"] = self._answer()
        return rules

    @functools.cached_property
    def _root(self) -> tuple[Node, str]:
        """The language as one tree, and the GBNF of its root rule (prefill dropped from both)."""
        rules = self._rules
        if self.mode == "answer":
            if self.prefill != FINAL:
                raise ValueError(f"the answer-only language follows the prefill {FINAL!r}")
            return Seq((Lit(" "), rules["answer"])), '" " answer'
        ends: list[Node] = []
        ends_gbnf: list[str] = []
        if self.mode == "step":
            if self.calls:
                more = self.options.max_calls - 1
                line = Seq((Lit("Action: "), rules["call"]))
                ends.append(Seq((line, Rep(Seq((Lit("\n"), line)), 0, more))) if more else line)
                ends_gbnf.append('"Action: " call' + (f' ("\\nAction: " call){{0,{more}}}' if more else ""))
            if self.allows_final:
                ends.append(Seq((Lit(FINAL + " "), rules["answer"])))
                ends_gbnf.append(f'"{FINAL} " answer')
        ending: list[Node] = [ends[0] if len(ends) == 1 else Alt(tuple(ends))] if ends else []
        head: list[Node] = [rules["thought"]] if "thought" in rules else []
        tree = drop_prefix(Seq((*head, *ending)), self.prefill)
        root = " ".join((["thought"] if head else []) + (["(" + " | ".join(ends_gbnf) + ")"] if ends else []))
        if self.prefill and not head:
            raise ValueError("only a language that starts with a thought can be prefilled")
        return tree, root

    @functools.cached_property
    def gbnf(self) -> str:
        rules = dict(self._rules)
        root = self._root[1]
        if "thought" in rules and self.prefill:
            rules["thought"] = drop_prefix(rules["thought"], self.prefill)
        lines = [f"root ::= {root}"] + [f"{n} ::= {to_gbnf(node)}" for n, node in rules.items()]
        return "\n".join(lines) + "\n"

    @functools.cached_property
    def regex(self) -> str:
        return to_regex(self._root[0])

    @functools.cached_property
    def max_chars(self) -> int | None:
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

    # -- deciding without a thought ---------------------------------------------------------------
    def resolve(self, text: str) -> str | None:
        """For a language without a thought and one call per step: the one whole reply ``text``
        already commits to (a settled call), else ``None`` (more to write, or still open)."""
        if self.options.thought or self.options.max_calls != 1 or self.mode != "step" or not text:
            return None
        if not all(isinstance(c, Lit) for c in self.calls):
            return None
        if self.allows_final and FINAL.startswith(text[: len(FINAL)]) or text.startswith(FINAL):
            return None
        hits = [f"Action: {c.text}" for c in self.calls if isinstance(c, Lit) and f"Action: {c.text}".startswith(text)]
        return hits[0] if len(hits) == 1 else None


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


def step_grammar(request: LLMRequest, options: StepOptions = FULL) -> StepGrammar:
    """The grammar for one request (cached by tools, handles, done calls and options)."""
    fresh, observations = _turn_state(request.messages)
    cap = options.max_calls_per_image
    only_final = cap is not None and observations >= cap * max(1, len(request.handles))
    force = options.force_action and fresh
    grammar = _build(tuple(request.tools), tuple(request.handles), frozenset(request.done_calls),
                     force, only_final, options)
    phrases = request.answer_phrases
    return replace(grammar, phrases=tuple(phrases)) if phrases and grammar.allows_final else grammar


@functools.lru_cache(maxsize=512)
def _build(tools: tuple[Tool, ...], handles: tuple[str, ...], done: frozenset[str], force: bool,
           only_final: bool, options: StepOptions) -> StepGrammar:
    calls: list[Node] = []
    if not only_final:
        for t in tools:
            node = tool_calls(t, handles, done, options.optional_args)
            if node is not None:
                calls.extend(node.options if isinstance(node, Alt) else (node,))
    return StepGrammar(tuple(calls), allows_final=not (force and calls), options=options)


#: The longest run of words a grounded answer takes from one phrase.
MAX_RUN_WORDS = 12


@functools.lru_cache(maxsize=64)
def grounded_answer(phrases: tuple[tuple[str, ...], ...], max_chars: int | None = None) -> Node:
    """A grounded answer: one run of consecutive words (at most :data:`MAX_RUN_WORDS`) of one of
    ``phrases``, words joined by one space, as a word trie (a shared start is written once, so
    the model's first tokens do not commit it to one phrase). With ``max_chars``, runs longer
    than that are left out."""
    trie: dict[str, dict] = {}
    for words in phrases:
        for i in range(len(words)):
            node, length = trie, -1
            for w in words[i:i + MAX_RUN_WORDS]:
                length += len(w) + 1
                if max_chars is not None and length > max_chars:
                    break
                node = node.setdefault(w, {})

    def build(node: dict[str, dict], first: bool) -> Node:
        options: list[Node] = []
        for word, child in node.items():
            head = Lit(word if first else " " + word)
            options.append(Seq((head, Rep(build(child, False), 0, 1))) if child else head)
        return options[0] if len(options) == 1 else Alt(tuple(options))

    if not trie:
        raise ValueError("a grounded answer needs at least one phrase")
    return build(trie, True)


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


#: ``rank(candidates)``: the model's log-likelihood of writing each candidate answer (after
#: ``Final Answer:``, its end included), in the same order.
Rank = Callable[[Sequence[str]], Sequence[float]]


#: Nats of the model's log-likelihood that one unit of cosine similarity to the question is worth
#: when grounded answers are ranked (:func:`rank_answers`). Chosen on the tuning questions of
#: ``tools/planner_report.py`` (receipts, signs, colour scenes, a page), where every value from
#: 15 to 30 gave the same answers (5: fewer right, 1000, relevance alone: fewer right); never
#: tuned on the held-out set (``tools/heldout_report.py``).
RELEVANCE_WEIGHT = 20.0


def rank_answers(candidates: Sequence[str], likelihood: Sequence[float],
                 relevance: Sequence[float] | None) -> int:
    """The index of the best candidate answer: the model's log-likelihood of writing it (nats)
    plus :data:`RELEVANCE_WEIGHT` times its cosine similarity to the question (when known). A
    candidate only the model likes, or only the embedder likes, loses to one both like; when
    every candidate is about as relevant (the colours of one list), the model decides."""
    score = list(likelihood)
    if relevance is not None and len(relevance) == len(candidates):
        score = [a + RELEVANCE_WEIGHT * b for a, b in zip(score, relevance, strict=True)]
    return max(range(len(candidates)), key=lambda i: (score[i], -i))


def run_step(grammar: StepGrammar, generate: Generate, *, on_text: Callable[[str], None] | None = None,
             prefill: bool = True, rank: Rank | None = None,
             relevance: Sequence[float] | None = None) -> tuple[Generated, dict[str, Any]]:
    """Drive one constrained step; returns the whole reply text, token counts and how it was decided.

    ``meta["decided"]`` says what happened (it becomes :attr:`StepRecord.decided`):

    * ``"forced"``: the language held exactly one reply (no thought, a settled call); the engine
      wrote it and the model was not called.
    * ``"without_thought"``: the model wrote only its decision (and, for an answer, the answer).
      When the only allowed ending is an answer, ``Final Answer:`` is prefilled (written by the
      engine) and the model writes the answer after it. A grounded answer with ``rank`` is not
      decoded greedily: every whole phrase is scored (:func:`rank_answers`, with ``relevance``)
      and the best is written: ``meta["decided"]`` is then ``"ranked"`` and ``meta["ranked"]``
      the number of candidates (a single candidate is ``"forced"``: no model runs). When the model's first tokens already
      settle which call it makes, decoding stops and the rest of that call is appended as text
      (forced tokens cost a forward pass each and carry no choice).
    * ``"after_thought"``: classic ReAct in one pass: the model's thought, then its decision with
      the thought in view. ``Thought:`` is prefilled (with ``prefill``); when the ending is
      settled, decoding stops at the thought's newline and the ``Action:`` line is appended.

    ``meta["choices"]`` is how many different first steps the language allowed (1: no choice).
    ``on_text`` receives the reply as it is written (prefills and appended text included).
    """
    meta: dict[str, Any] = {"choices": grammar.choices}
    if grammar.phrases:
        meta["grounded"] = True
    forced = grammar.forced_reply
    if forced is not None:
        meta["decided"] = "forced"
        if on_text is not None:
            on_text(forced)
        return Generated(forced, None, 0), meta
    if not grammar.options.thought:
        meta["decided"] = "without_thought"
        if not grammar.calls and grammar.allows_final and grammar.phrases and (
                len(grammar.phrases) == 1 or (prefill and rank is not None)):
            candidates = [" ".join(p) for p in grammar.phrases]
            if len(candidates) == 1:  # one possible answer: written without the model
                best = candidates[0]
                meta["decided"] = "forced"
            else:
                best = candidates[rank_answers(candidates, rank(candidates), relevance)]  # type: ignore[misc]
                meta["decided"] = "ranked"
                meta["ranked"] = len(candidates)
            text = f"{FINAL} {best}"
            if on_text is not None:
                on_text(text)
            return Generated(text, None, 0), meta
        if prefill and not grammar.calls and grammar.allows_final:
            reply = replace(grammar, mode="answer", prefill=FINAL)
            if on_text is not None:
                on_text(FINAL)
            out = generate(reply, None, True)
            return Generated(FINAL + out.text, out.prompt_tokens, out.completion_tokens), meta
        settled: dict[str, str] = {}

        def stop_when(text: str) -> bool:
            hit = grammar.resolve(text)
            if hit is not None:
                settled["reply"] = hit
            return hit is not None

        out = generate(grammar, stop_when, True)
        text = out.text
        if "reply" in settled and settled["reply"].startswith(text) and len(settled["reply"]) > len(text):
            rest = settled["reply"][len(text):]
            if on_text is not None:
                on_text(rest)
            text = settled["reply"]
        return Generated(text, out.prompt_tokens, out.completion_tokens), meta
    meta["decided"] = "after_thought"
    tail = grammar.fixed_tail
    reply = replace(grammar, mode="thought") if tail else grammar
    if prefill:
        reply = replace(reply, prefill=PREFILL)
        if on_text is not None:
            on_text(PREFILL)
    out = generate(reply, (lambda t: t.endswith("\n")) if tail else None, True)
    text = reply.prefill + out.text
    if tail:
        appended = ("" if text.endswith("\n") else "\n") + tail
        if on_text is not None:
            on_text(appended)
        text += appended
    return Generated(text, out.prompt_tokens, out.completion_tokens), meta


def describe(node: Node) -> str:
    """A readable form of a call alternative: its text, or its GBNF when it is a pattern."""
    return node.text if isinstance(node, Lit) else to_gbnf(node)

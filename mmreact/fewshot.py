"""Solved examples (few-shot demonstrations): shown to the agent, or to an end-to-end model, before
the question.

An :class:`Example` is images + question + answer and, optionally, the steps that solve it (tool
calls, each with an optional thought). Examples come from Python or from a JSONL file in the eval
format (:mod:`mmreact.eval.dataset`) plus an optional ``steps`` field::

    {"id": "cafe", "images": ["receipt.png"], "question": "How much did the croissant cost?",
     "answers": ["2.75"],
     "steps": [{"thought": "The prices are printed on the receipt, so I read its text.",
                "actions": ["ocr(image_1)"]},
               {"thought": "The OCR line 'Croissant 2.75' holds the price."}]}

A step is an object with ``actions`` (a list of calls; ``action`` for one) and an optional
``thought``, or just a call string (``"ocr(image_1)"``). A last step with a thought and no actions
is the thought before the answer. The answer shown is ``answers[0]``. Calls name the example's own
images ``image_1``, ``image_2``... as a question about them would.

Decisions:

* **Checked and run when the agent is created** (:func:`for_agent`): each call must name a tool the
  agent has, bind its arguments and use the example's own images; mmreact then runs it on the
  example's images through the tools' result cache (a fixed set costs its expert calls once per
  process). A call that fails raises :class:`ConfigError` naming the example, never a silent gap.
* **Completed exchanges.** An example becomes the messages a real turn leaves: the question (a
  ``user`` message in :func:`mmreact.prompts.question_text`'s format), one assistant reply per step,
  the observations (``observation`` messages built by :func:`mmreact.prompts.observations_text`, so
  text in an example image is fenced like any other observation and cannot inject), then the
  assistant's ``Final Answer``. They follow the system prompt in every :class:`mmreact.Chat`.
* **Handles that cannot be confused or called.** Example images are named ``example_1_image_1``,
  ``example_1_image_2``, ``example_2_image_1``... and never enter a chat's image table, so grammars
  built from a request's handles cannot offer them, and a call on one gets the usual "not an image
  handle" observation.
* **The backend's own format.** Backends that decide without a thought (``LLM.writes_thoughts`` is
  false: the embedded default) see only ``Action:`` and ``Final Answer:`` lines; the others see a
  ``Thought:`` line first (the example's own, else a plain default). Backends in native
  tool-calling mode (``llm.mode == "tools"``) get the calls as native calls and results.
* End-to-end models (:func:`for_model`) see each example's images, question and answer as a user
  turn and an assistant turn before the question, in their own chat format
  (:mod:`mmreact.mllm`); steps are not shown to them.
* :attr:`Demonstrations.fingerprint` hashes what the model is shown (rendered text, image
  bytes' hashes), so eval results made with other examples are never mixed
  (:mod:`mmreact.eval.fingerprint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import prompts, protocol
from ._hashing import digest
from .errors import ConfigError, MMReactError, one_line
from .images import Image, ImagePolicy, ImageSource, load_image
from .llms.base import Message
from .qa import QAItem, SampleRoots, item_from_dict, jsonl_records, read_text
from .trace import CallRecord

if TYPE_CHECKING:
    from .llms.base import LLM
    from .tools import Tool

__all__ = ["Demonstrations", "Example", "Shown", "Step", "as_examples", "examples_from_items", "for_agent",
           "for_model", "load_examples"]

#: Thoughts shown when an example gives none and the backend writes thoughts.
DEFAULT_CALL_THOUGHT = "{tools} will tell me what I need."
DEFAULT_CONCLUSION = "The observations answer the question."
DEFAULT_DIRECT = "I can answer this directly."
_STEP_KEYS = {"thought", "actions", "action"}


@dataclass(frozen=True)
class Step:
    """One step of a solved example: calls (written as the model writes them, on ``image_1``...)
    and an optional thought. A step without calls, placed last, is the thought before the answer."""

    actions: tuple[str, ...] = ()
    thought: str | None = None

    def __post_init__(self) -> None:
        actions = (self.actions,) if isinstance(self.actions, str) else tuple(self.actions)
        object.__setattr__(self, "actions", actions)
        if not all(isinstance(a, str) and a.strip() for a in actions):
            raise ConfigError("Every action of an example step must be a non-empty call such as ocr(image_1).")
        if self.thought is not None and (not isinstance(self.thought, str) or not self.thought.strip()):
            raise ConfigError("An example step's thought must be a non-empty string (or None).")
        if not actions and self.thought is None:
            raise ConfigError("An example step needs actions, a thought, or both.")


@dataclass(frozen=True, eq=False)
class Example:
    """A solved example: images (paths, PIL images, numpy arrays), a question, the answer shown,
    and optionally the steps that reach it (:class:`Step` objects or call strings)."""

    question: str
    answer: str
    images: tuple[ImageSource, ...] = ()
    steps: tuple[Step, ...] = ()
    id: str | None = None

    def __post_init__(self) -> None:
        name = f"Example '{self.id}'" if self.id else "An example"
        if not isinstance(self.question, str) or not self.question.strip():
            raise ConfigError(f"{name} needs a non-empty question.")
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise ConfigError(f"{name} needs a non-empty answer.")
        images = self.images
        if isinstance(images, (str, bytes, Path)) or not isinstance(images, Sequence):
            images = (images,)
        object.__setattr__(self, "images", tuple(images))
        steps = (self.steps,) if isinstance(self.steps, (str, Step)) else tuple(self.steps)
        steps = tuple(Step(actions=(s,)) if isinstance(s, str) else s for s in steps)
        if not all(isinstance(s, Step) for s in steps):
            raise ConfigError(f"{name}: steps must be Step objects or call strings such as 'ocr(image_1)'.")
        for s in steps[:-1]:
            if not s.actions:
                raise ConfigError(f"{name}: only the last step may be a thought without actions.")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "question", self.question.strip())
        object.__setattr__(self, "answer", self.answer.strip())

    @property
    def call_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.actions)

    @property
    def conclusion(self) -> str | None:
        """The thought before the answer (a last step without actions), if any."""
        return self.steps[-1].thought if self.steps and not self.steps[-1].actions else None


# -- loading -------------------------------------------------------------------------------------
def _steps_from_json(raw: Any, where: str) -> tuple[Step, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'steps' must be a list of steps.")
    steps: list[Step] = []
    for n, s in enumerate(raw, start=1):
        here = f"{where}, step {n}"
        if isinstance(s, str):
            steps.append(Step(actions=(s,)))
            continue
        if not isinstance(s, dict):
            raise ConfigError(f"{here}: a step is a call string or an object with 'actions' and 'thought'.")
        unknown = sorted(set(s) - _STEP_KEYS)
        if unknown:
            raise ConfigError(f"{here}: unknown field '{unknown[0]}' (fields: actions, action, thought).")
        actions = s.get("actions", [])
        if "action" in s:
            actions = [s["action"], *actions] if isinstance(actions, list) else actions
        if isinstance(actions, str):
            actions = [actions]
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise ConfigError(f"{here}: 'actions' must be a list of call strings such as \"ocr(image_1)\".")
        try:
            steps.append(Step(actions=tuple(actions), thought=s.get("thought")))
        except ConfigError as exc:
            raise ConfigError(f"{here}: {str(exc)[0].lower()}{str(exc)[1:]}") from None
    return tuple(steps)


def example_from_dict(data: Any, where: str, base: Path) -> Example:
    """One JSON object (the eval format plus ``steps``) as an :class:`Example`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}.")
    rest = {k: v for k, v in data.items() if k != "steps"}
    item = item_from_dict(rest, where, base, SampleRoots())
    steps = _steps_from_json(data["steps"], where) if "steps" in data else ()
    try:
        return Example(question=item.question, answer=item.answers[0], images=item.images, steps=steps, id=item.id)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_examples(path: str | Path) -> list[Example]:
    """Every example of a JSONL file (one JSON object per line; image paths relative to the file)."""
    p = Path(path).expanduser()
    text = read_text(p, what="examples file", folder="a folder; give a JSONL file of solved examples",
                     form="an examples file is JSONL")
    return jsonl_records(p, text, lambda data, where: example_from_dict(data, where, p.parent), "examples")


def examples_from_items(items: Iterable[QAItem]) -> list[Example]:
    """Eval items as examples without steps (question, images, first answer)."""
    return [Example(question=it.question, answer=it.answers[0], images=it.images, id=it.id) for it in items]


def as_examples(examples: Any) -> list[Example]:
    """A JSONL path, another system's :class:`Demonstrations`, or a sequence of :class:`Example`
    objects, eval items or JSON-style dicts."""
    if isinstance(examples, (str, Path)):
        return load_examples(examples)
    if isinstance(examples, Demonstrations):
        return list(examples.examples)
    if isinstance(examples, (Example, Mapping)) or not isinstance(examples, Iterable):
        raise ConfigError("examples must be a list of mmreact.fewshot.Example objects (or a JSONL file path).")
    out: list[Example] = []
    for n, e in enumerate(examples, start=1):
        if isinstance(e, Example):
            out.append(e)
        elif isinstance(e, QAItem):
            out.extend(examples_from_items([e]))
        elif isinstance(e, Mapping):
            out.append(example_from_dict(dict(e), f"example {n}", Path.cwd()))
        else:
            raise ConfigError(f"Example {n} is a {type(e).__name__}; give mmreact.fewshot.Example objects.")
    return out


# -- showing -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Shown:
    """One example with its images loaded and named ``example_<index>_image_<k>``."""

    index: int
    example: Example
    images: tuple[Image, ...]

    @property
    def handles(self) -> tuple[str, ...]:
        return tuple(f"example_{self.index}_image_{k}" for k in range(1, len(self.images) + 1))

    @property
    def label(self) -> str:
        return f"Example {self.index}" + (f" ('{self.example.id}')" if self.example.id else "")

    def question_text(self) -> str:
        """The question as :func:`mmreact.prompts.question_text` writes a real one."""
        lines = []
        if self.images:
            lines.append("Images: " + ", ".join(f"{h} ({img.width}x{img.height})"
                                                for h, img in zip(self.handles, self.images)))
        lines.append(f"Question: {self.example.question}")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Demonstrations:
    """Examples ready to show: loaded images, and for the agent the messages of each completed
    exchange (``messages``) and the calls that produced its observations (``calls``)."""

    shown: tuple[Shown, ...]
    messages: tuple[Message, ...] = ()
    calls: tuple[CallRecord, ...] = ()
    #: What the examples were rendered for: ``"agent"`` or ``"model"`` (end-to-end).
    kind: str = "model"
    _fingerprint: str = field(default="", repr=False)

    def __len__(self) -> int:
        return len(self.shown)

    @property
    def examples(self) -> tuple[Example, ...]:
        return tuple(s.example for s in self.shown)

    @property
    def image_count(self) -> int:
        return sum(len(s.images) for s in self.shown)

    @property
    def fingerprint(self) -> str:
        """A hash of what the model is shown (see :mod:`mmreact.eval.fingerprint`)."""
        return self._fingerprint

    def text(self) -> str:
        """The rendered exchanges as plain text (``role: content`` per message)."""
        return "\n\n".join(f"[{m.role}]\n{m.content}" for m in self.messages)


def _digest(value: Any) -> str:
    return digest(value)


def _load(examples: Sequence[Example], policy: ImagePolicy | None) -> tuple[Shown, ...]:
    shown = []
    for i, example in enumerate(examples, start=1):
        try:
            images = tuple(load_image(src, policy=policy) for src in example.images)
        except MMReactError as exc:
            raise ConfigError(f"Example {i}{_id(example)}: {exc}") from None
        shown.append(Shown(index=i, example=example, images=images))
    return tuple(shown)


def _id(example: Example) -> str:
    return f" ('{example.id}')" if example.id else ""


def _basis(shown: Sequence[Shown]) -> list[Any]:
    return [[s.example.question, s.example.answer, [img.sha256 for img in s.images]] for s in shown]


def for_model(examples: Any, policy: ImagePolicy | None = None) -> Demonstrations | None:
    """Examples for an end-to-end model: images loaded, nothing run (``None`` when there are none)."""
    listed = as_examples(examples)
    if not listed:
        return None
    shown = _load(listed, policy)
    return Demonstrations(shown=shown, kind="model", _fingerprint=_digest({"model": _basis(shown)}))


def for_agent(examples: Any, tools: Sequence[Tool], llm: LLM, policy: ImagePolicy | None = None
              ) -> Demonstrations | None:
    """Check each example's steps against ``tools``, run them on the example's images (through the
    result cache) and render the completed exchanges for ``llm``'s step format."""
    listed = as_examples(examples)
    if not listed:
        return None
    by_name = {t.name: t for t in tools}
    planned = [_plan(i, e, by_name) for i, e in enumerate(listed, start=1)]  # check all before running any
    shown = _load(listed, policy)
    thoughts = bool(getattr(llm, "writes_thoughts", True))
    native = getattr(llm, "mode", "text") == "tools"
    messages: list[Message] = []
    calls: list[CallRecord] = []
    for s, plan in zip(shown, planned, strict=True):
        msgs, recs = _exchange(s, plan, thoughts=thoughts, native=native)
        messages.extend(msgs)
        calls.extend(recs)
    basis = {"agent": _basis(shown), "messages": [[m.role, m.content, [c.text() for c in m.calls]] for m in messages]}
    return Demonstrations(shown=shown, messages=tuple(messages), calls=tuple(calls), kind="agent",
                          _fingerprint=_digest(basis))


@dataclass(frozen=True)
class _Call:
    tool: Tool
    bound: dict[str, Any]  # image parameters hold the example's 1-based image index


def _plan(index: int, example: Example, tools: Mapping[str, Tool]) -> list[tuple[Step, list[_Call]]]:
    """Parse and bind every call of ``example``; one sentence naming the example and call otherwise."""
    from .tools import ArgumentError

    name = f"Example {index}{_id(example)}"
    out = []
    for step in example.call_steps:
        planned = []
        for text in step.actions:
            try:
                call = protocol.parse_call(text)
            except protocol.ParseError as exc:
                raise ConfigError(f"{name}: cannot read the call '{text}' ({str(exc).rstrip('.')}).") from None
            tool = tools.get(call.tool)
            if tool is None:
                have = ", ".join(tools) or "none"
                raise ConfigError(f"{name}: '{text}' calls the tool '{call.tool}', which this agent does not have "
                                  f"(its tools: {have}).")
            try:
                bound = tool.bind(call.args, call.kwargs)
            except ArgumentError as exc:
                raise ConfigError(f"{name}: '{text}' has {str(exc).rstrip('.')}.") from None
            for p in tool.image_params:
                handle = bound[p]
                k = _image_number(handle)
                if k is None or k > len(example.images):
                    count = len(example.images)
                    names = ", ".join(f"image_{j}" for j in range(1, count + 1)) or "none"
                    raise ConfigError(f"{name}: '{text}' names the image '{handle}', but the example's images are "
                                      f"{names}.")
                bound[p] = k
            planned.append(_Call(tool, bound))
        out.append((step, planned))
    return out


def _image_number(handle: Any) -> int | None:
    if isinstance(handle, str) and handle.startswith("image_") and handle[6:].isdigit() and int(handle[6:]) >= 1:
        return int(handle[6:])
    return None


def _call_text(call: _Call, handles: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The call as :meth:`Tool.canonical` writes it, with the example's handles; and its arguments."""
    args = {k: (handles[v - 1] if k in call.tool.image_params else v) for k, v in call.bound.items()}
    return call.tool.canonical(args), args


def _run(shown: Shown, call: _Call, text: str, args: dict[str, Any]) -> CallRecord:
    resolved = {k: (shown.images[v - 1] if k in call.tool.image_params else v) for k, v in call.bound.items()}
    try:
        obs, cached = call.tool.invoke_cached(resolved)
    except Exception as exc:  # noqa: BLE001 - one sentence naming the example
        raise ConfigError(f"{shown.label}: {text} failed, so the example cannot be shown solved "
                          f"({one_line(exc).rstrip('.')}).") from None
    if obs.error:
        raise ConfigError(f"{shown.label}: {text} failed, so the example cannot be shown solved "
                          f"({' '.join(obs.text.split()).removeprefix('Error: ').rstrip('.')[:300]}).")
    return CallRecord(tool=call.tool.name, call=text, args=args, text=obs.text, artifact=obs.artifact,
                      reused="cache" if cached else None)


def _reply(thought: str | None, tail: str, thoughts: bool) -> str:
    return f"Thought: {thought}\n{tail}" if thoughts and thought else tail


def _exchange(shown: Shown, plan: list[tuple[Step, list[_Call]]], *, thoughts: bool, native: bool
              ) -> tuple[list[Message], list[CallRecord]]:
    messages = [Message("user", shown.question_text())]
    records: list[CallRecord] = []
    handles = shown.handles
    for step, calls in plan:
        texts = [_call_text(c, handles) for c in calls]
        step_records = [_run(shown, c, text, args) for c, (text, args) in zip(calls, texts, strict=True)]
        records.extend(step_records)
        thought = step.thought or DEFAULT_CALL_THOUGHT.format(
            tools=" and ".join(dict.fromkeys(c.tool.name for c in calls)))
        if native:
            ids = [protocol.new_call_id() for _ in calls]
            native_calls = tuple(protocol.Call(c.tool.name, (), args, cid)
                                 for c, (_, args), cid in zip(calls, texts, ids, strict=True))
            messages.append(Message("assistant", thought if thoughts else "", calls=native_calls))
            results = tuple((cid, r.text) for cid, r in zip(ids, step_records, strict=True))
        else:
            actions = "\n".join(f"Action: {text}" for text, _ in texts)
            messages.append(Message("assistant", _reply(thought, actions, thoughts)))
            results = ()
        messages.append(Message("observation", prompts.observations_text(step_records), results=results))
    conclusion = shown.example.conclusion or (DEFAULT_CONCLUSION if plan else DEFAULT_DIRECT)
    messages.append(Message("assistant", _reply(conclusion, f"Final Answer: {shown.example.answer}", thoughts)))
    return messages, records

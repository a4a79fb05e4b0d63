"""Frozen step records: what happened in a run, in order. Round-trips through JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .findings import Findings
from .grounding import Grounding
from .grounding import Mode as GroundingMode

#: ``llm_error``: the partial trace carried by an :class:`~mmreact.errors.LLMError` raised mid-run.
Status = Literal["answered", "max_steps", "too_many_errors", "llm_error"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CallRecord(_Frozen):
    """One tool call and its observation."""

    tool: str
    #: The call as text, e.g. ``ocr(image_1)`` (canonical form when the arguments were valid).
    call: str
    args: dict[str, Any]
    text: str
    artifact: Any = None
    error: bool = False
    #: ``"repeat"`` when an identical earlier call's observation was reused,
    #: ``"cache"`` when the process-wide result cache answered, ``"prefetch"`` when a job started
    #: ahead of the model's call (see :mod:`mmreact.prefetch`) answered it, else ``None``.
    reused: Literal["repeat", "cache", "prefetch"] | None = None
    seconds: float = 0.0

    @property
    def findings(self) -> Findings:
        """What the tool found, typed (:class:`mmreact.findings.Findings`; none for a failed call)."""
        return Findings.from_call(self)

    @property
    def reuse_note(self) -> str | None:
        """Where a reused result came from, in words (``"cached"``...), else None."""
        return {"repeat": "repeated call", "cache": "cached", "prefetch": "prefetched"}.get(self.reused or "")

    def _repr_html_(self) -> str:
        from .views.notebook import call_html
        return call_html(self)


class StepRecord(_Frozen):
    """One model turn: its text, the calls it made (or its final answer), and timings."""

    index: int
    llm_text: str
    thought: str | None = None
    calls: tuple[CallRecord, ...] = ()
    final_answer: str | None = None
    #: A reply the engine could not act on; the message that went back to the model.
    error: str | None = None
    #: Wall time of the model call, including ``llm_wait_seconds``.
    llm_seconds: float = 0.0
    #: Time the call waited for a model shared with other threads (its lock) before it ran.
    llm_wait_seconds: float = 0.0
    tool_seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: How the reply was decided when a grammar drove decoding (``None``: the model wrote freely):
    #: ``"after_thought"`` (its thought came first, then its decision), ``"without_thought"``
    #: (it wrote only its decision: no thought exists), ``"forced"`` (the grammar allowed exactly
    #: one reply, which the engine wrote without calling the model), ``"ranked"`` (a grounded answer:
    #: the model scored every allowed answer and the engine wrote the best, see
    #: :func:`mmreact.llms.grammar.rank_answers`; ``choices`` is then the number of candidates).
    decided: Literal["after_thought", "without_thought", "forced", "ranked"] | None = None
    #: How many different first steps (calls, or an answer) the grammar allowed (1: no choice).
    choices: int | None = None
    #: Something the backend wants the reader of the trace to know about this reply, e.g. that a
    #: server ignored or refused the step grammar, so the reply was decoded unconstrained.
    warning: str | None = None
    #: For an answer step: which of the answer's facts the run's observations support
    #: (see :mod:`mmreact.grounding`); ``None`` when grounding is off or the step did not answer.
    grounding: Grounding | None = None
    #: When this answer was not taken because it stated unsupported facts (``grounding="reask"``):
    #: the message that asked the model once more. The next step holds the answer that was taken.
    reask: str | None = None

    def _repr_html_(self) -> str:
        from .views.notebook import step_html
        return step_html(self)


class PrefetchRecord(_Frozen):
    """A tool call started when the images arrived, before the model asked (see :mod:`mmreact.prefetch`)."""

    tool: str
    call: str
    #: Whether the model made this call in the turn (its record then says ``reused="prefetch"``).
    used: bool
    #: How long the job ran; ``None`` when it was still running as the turn ended.
    seconds: float | None = None
    #: Why the job failed (then the model's own call ran the tool itself).
    error: str | None = None


class ImageRecord(_Frozen):
    handle: str
    source: str
    width: int
    height: int
    sha256: str


class Trace(_Frozen):
    """Everything one question cost: steps, answer, status and timings."""

    question: str
    images: tuple[ImageRecord, ...] = ()
    steps: tuple[StepRecord, ...] = ()
    answer: str | None = None
    status: Status = "answered"
    #: Why the run stopped without an answer, in one sentence (``None`` when answered).
    message: str | None = None
    llm: str = ""
    seconds: float = 0.0
    #: Calls started ahead of the model on this turn's new images, used or not.
    prefetched: tuple[PrefetchRecord, ...] = ()
    #: The grounding setting the run used (``Agent(grounding=...)``, resolved): ``"constrain"``,
    #: ``"reask"``, ``"check"`` or ``"off"`` (``None`` in traces written before it existed).
    grounding_mode: GroundingMode | None = None

    @property
    def grounding(self) -> Grounding | None:
        """The check of the answer that was taken (``None``: no answer, or grounding off)."""
        for step in reversed(self.steps):
            if step.final_answer is not None and step.reask is None:
                return step.grounding
        return None

    @property
    def llm_seconds(self) -> float:
        return sum(s.llm_seconds for s in self.steps)

    @property
    def llm_wait_seconds(self) -> float:
        return sum(s.llm_wait_seconds for s in self.steps)

    @property
    def tool_seconds(self) -> float:
        return sum(s.tool_seconds for s in self.steps)

    @property
    def tokens(self) -> int | None:
        counts = [(s.prompt_tokens or 0) + (s.completion_tokens or 0) for s in self.steps
                  if s.prompt_tokens is not None or s.completion_tokens is not None]
        return sum(counts) if counts else None

    @property
    def calls(self) -> list[CallRecord]:
        return [c for s in self.steps for c in s.calls]

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Trace:
        return cls.model_validate_json(text)

    def pretty(self) -> str:
        """A readable plain-text rendering."""
        from .views.text import trace_text

        return trace_text(self)

    def __str__(self) -> str:
        return self.pretty()

    def _repr_html_(self) -> str:
        from .views.notebook import trace_html
        return trace_html(self)

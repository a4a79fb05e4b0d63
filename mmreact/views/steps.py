"""One description of a step, in words, that every view renders: the terminal (:mod:`.text`),
notebooks (:mod:`.notebook`), the server's reasoning text (:mod:`mmreact.serve`) and the web demo.

:func:`describe` turns a :class:`~mmreact.trace.StepRecord` into a :class:`StepView`: how the step
was decided, its thought, each call with its observation and where a reused result came from, an
unusable reply, the answer with its grounding check (:mod:`mmreact.grounding`) and a re-ask. The
views differ only in layout (indentation, HTML, Markdown), so a new fact about a step is worded
once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..grounding import Fact, Grounding
from ..trace import StepRecord


@dataclass(frozen=True, slots=True)
class CallView:
    call: str
    text: str
    error: bool
    seconds: float
    #: where a reused result came from ("cached", "prefetched", "repeated call"), else ``None``
    reuse: str | None


@dataclass(frozen=True, slots=True)
class StepView:
    index: int
    #: "llm 12 ms, tools 340 ms, 500+5 tokens"
    timing: str
    decision: str | None
    warning: str | None
    thought: str | None
    calls: tuple[CallView, ...]
    #: why the model's reply could not be used (its text is ``reply``), else ``None``
    unusable: str | None
    reply: str
    answer: str | None
    grounding: Grounding | None
    #: the check of the answer in lines (summary, then one line per fact)
    grounding_lines: tuple[str, ...]
    #: the message that asked again when the answer was not taken, else ``None``
    reask: str | None


def decision_note(step: StepRecord) -> str | None:
    """How the step was decided, when the trace must say it (see :attr:`StepRecord.decided`)."""
    if step.decided == "forced":
        return "forced: the grammar allowed only this step, so the engine wrote it without calling the model"
    if step.decided == "ranked":
        return (f"grounded answer: the model scored {step.choices} candidate answers from the observations and "
                "the engine wrote the best (model likelihood + relevance to the question)")
    only = step.choices == 1
    if step.decided == "without_thought":
        return "decided without a thought" + ("; an answer was the only step allowed" if only else "")
    if step.decided == "after_thought" and only:
        return "the grammar allowed only this ending"
    return None


def support_text(fact: Fact) -> str:
    """Where a fact was seen, in words: ``ocr(image_1) line 5 'TOTAL 7.75'``, or why not."""
    if not fact.supported:
        return "no observation says it"
    if fact.evidence is None:
        return fact.note or "given"
    e = fact.evidence
    where = e.call or "the context"
    if e.line is not None and e.kind in ("text", "region", "object", "tag", "other"):
        where += f" {'line' if e.kind in ('text', 'other') else e.kind} {e.line + 1}"
    note = f"; {fact.note}" if fact.note else ""
    return f"{where} {e.text!r}{note}"


def grounding_lines(check: Grounding) -> list[str]:
    """The check of an answer in plain lines: a summary, then one line per fact."""
    objects = "" if check.objects_checked or not check.facts else "; object words not checked (no expert saw objects)"
    lines = [f"Grounding ({check.mode}): {check.summary()}{objects}"]
    for f in check.facts:
        mark = "supported" if f.supported else "UNSUPPORTED"
        lines.append(f"  {mark} {f.kind} {f.text!r}: {support_text(f)}")
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def describe(step: StepRecord) -> StepView:
    timing = f"llm {_ms(step.llm_seconds)}, tools {_ms(step.tool_seconds)}"
    if step.prompt_tokens is not None:
        timing += f", {step.prompt_tokens}+{step.completion_tokens} tokens"
    calls = tuple(CallView(c.call, c.text, c.error, c.seconds, c.reuse_note) for c in step.calls)
    check = step.grounding
    return StepView(
        index=step.index, timing=timing, decision=decision_note(step), warning=step.warning, thought=step.thought,
        calls=calls, unusable=step.error, reply=step.llm_text, answer=step.final_answer, grounding=check,
        grounding_lines=tuple(grounding_lines(check)) if check is not None else (), reask=step.reask,
    )

"""Readable plain-text rendering of steps and traces (terminal and ``str(trace)``)."""

from __future__ import annotations

import textwrap

from ..grounding import Fact, Grounding
from ..trace import StepRecord, Trace


def _indent(text: str, prefix: str = "    ", limit: int = 1200) -> str:
    if len(text) > limit:
        text = text[:limit] + f" [... {len(text) - limit} more characters]"
    return textwrap.indent(text, prefix)


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
    """The check of an answer in plain lines: a summary, then one line per fact (the terminal,
    ``str(trace)`` and the server's reasoning text all use these)."""
    objects = "" if check.objects_checked or not check.facts else "; object words not checked (no expert saw objects)"
    lines = [f"Grounding ({check.mode}): {check.summary()}{objects}"]
    for f in check.facts:
        mark = "supported" if f.supported else "UNSUPPORTED"
        lines.append(f"  {mark} {f.kind} {f.text!r}: {support_text(f)}")
    return lines


def step_text(step: StepRecord) -> str:
    lines = [f"Step {step.index}  (llm {step.llm_seconds * 1000:.0f} ms, tools {step.tool_seconds * 1000:.0f} ms"
             + (f", {step.prompt_tokens}+{step.completion_tokens} tokens" if step.prompt_tokens is not None else "")
             + ")"]
    note = decision_note(step)
    if note:
        lines.append(f"  ({note})")
    if step.warning:
        lines.append(f"  (warning: {step.warning})")
    if step.thought:
        lines.append(f"  Thought: {step.thought}")
    for c in step.calls:
        tag = f" [{c.reuse_note}]" if c.reuse_note else ""
        lines.append(f"  Action: {c.call}{tag}  ({c.seconds * 1000:.0f} ms)")
        lines.append(_indent(c.text))
    if step.error:
        lines.append(f"  Unusable reply: {step.error}")
        lines.append(_indent(step.llm_text))
    if step.final_answer is not None:
        lines.append(f"  Final Answer: {step.final_answer}")
        if step.grounding is not None:
            lines += ["  " + ln for ln in grounding_lines(step.grounding)]
        if step.reask:
            lines.append(f"  (answer not taken; the engine asked again: {step.reask})")
    return "\n".join(lines)


def trace_text(trace: Trace) -> str:
    head = [f"Question: {trace.question}"]
    for im in trace.images:
        head.append(f"  {im.handle}: {im.source} ({im.width}x{im.height})")
    body = [step_text(s) for s in trace.steps]
    for p in trace.prefetched:
        state = "running when the turn ended" if p.seconds is None else f"{p.seconds * 1000:.0f} ms"
        use = "used" if p.used else "unused"
        body.append(f"Prefetched {p.call} ({use}, {state}{'; failed: ' + p.error if p.error else ''})")
    tokens = f", {trace.tokens} tokens" if trace.tokens is not None else ""
    tail = (
        f"Answer: {trace.answer}" if trace.answer is not None else f"No answer ({trace.status}): {trace.message}"
    )
    summary = (f"{len(trace.steps)} steps in {trace.seconds:.2f} s (llm {trace.llm_seconds:.2f} s, "
               f"tools {trace.tool_seconds:.2f} s{tokens}; {trace.llm})")
    return "\n".join([*head, *body, tail, summary])

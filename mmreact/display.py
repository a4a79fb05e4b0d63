"""Readable plain-text rendering of steps and traces (terminal and ``str(trace)``)."""

from __future__ import annotations

import textwrap

from .trace import StepRecord, Trace


def _indent(text: str, prefix: str = "    ", limit: int = 1200) -> str:
    if len(text) > limit:
        text = text[:limit] + f" [... {len(text) - limit} more characters]"
    return textwrap.indent(text, prefix)


def decision_note(step: StepRecord) -> str | None:
    """How the step was decided, when the trace must say it (see :attr:`StepRecord.decided`)."""
    if step.decided == "forced":
        return "forced: the grammar allowed only this step, so the engine wrote it without calling the model"
    only = step.choices == 1
    if step.decided == "without_thought":
        return "decided without a thought" + ("; an answer was the only step allowed" if only else "")
    if step.decided == "after_thought" and only:
        return "the grammar allowed only this ending"
    return None


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

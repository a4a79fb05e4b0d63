"""Readable plain-text rendering of steps and traces (terminal and ``str(trace)``); the words of a
step come from :mod:`.steps`."""

from __future__ import annotations

import textwrap

from ..trace import StepRecord, Trace
from .steps import describe


def _indent(text: str, prefix: str = "    ", limit: int = 1200) -> str:
    if len(text) > limit:
        text = text[:limit] + f" [... {len(text) - limit} more characters]"
    return textwrap.indent(text, prefix)


def step_text(step: StepRecord) -> str:
    v = describe(step)
    lines = [f"Step {v.index}  ({v.timing})"]
    if v.decision:
        lines.append(f"  ({v.decision})")
    if v.warning:
        lines.append(f"  (warning: {v.warning})")
    if v.thought:
        lines.append(f"  Thought: {v.thought}")
    for c in v.calls:
        tag = f" [{c.reuse}]" if c.reuse else ""
        lines.append(f"  Action: {c.call}{tag}  ({c.seconds * 1000:.0f} ms)")
        lines.append(_indent(c.text))
    if v.unusable:
        lines.append(f"  Unusable reply: {v.unusable}")
        lines.append(_indent(v.reply))
    if v.answer is not None:
        lines.append(f"  Final Answer: {v.answer}")
        lines += ["  " + ln for ln in v.grounding_lines]
        if v.reask:
            lines.append(f"  (answer not taken; the engine asked again: {v.reask})")
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

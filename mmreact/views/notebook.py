"""Rich display in Jupyter: HTML for results, traces, chats, steps and observations, and
:func:`live`, which shows a run's steps as they happen.

Decisions:
- Every piece of text is passed through ``html.escape`` (quotes too): questions, thoughts, tool
  output and OCR text come from users, models and images, and are never trusted as markup.
- Images are inline PNG ``data:`` URIs, annotated with the run's boxes and scaled down to at most
  :data:`MAX_IMAGE_WIDTH` pixels wide, so a saved notebook stays self-contained and small.
- Long observations fold into ``<details>`` (the first line stays visible in the summary).
- The styles live in one ``<style>`` block scoped under ``.mmreact`` and use translucent
  backgrounds, so light and dark notebook themes both read.
- Nothing here imports IPython at module import; :func:`live` imports it when called, and falls
  back to plain printing outside a running kernel.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ..images import ImageSource
from .steps import describe, grounding_lines, support_text
from .text import step_text

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ..grounding import Grounding
    from ..observation import Observation
    from ..result import Result
    from ..trace import CallRecord, StepRecord, Trace

MAX_IMAGE_WIDTH = 640
FOLD_CHARS = 800
FOLD_LINES = 12

STYLE = """<style>
.mmreact{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:13px;line-height:1.45;max-width:980px}
.mmreact .mmr-q{font-size:14px;margin:2px 0 6px}
.mmreact .mmr-meta{color:#888;font-size:12px;font-weight:normal}
.mmreact ol.mmr-steps{list-style:none;padding:0;margin:6px 0}
.mmreact li.mmr-step{border-left:3px solid rgba(0,130,200,.55);padding:3px 0 3px 10px;margin:0 0 8px}
.mmreact .mmr-head{font-weight:600}
.mmreact .mmr-thought{font-style:italic;margin:2px 0}
.mmreact .mmr-call{margin:3px 0}
.mmreact code{background:rgba(127,127,127,.15);padding:0 3px;border-radius:3px}
.mmreact pre{white-space:pre-wrap;word-break:break-word;margin:3px 0 3px 14px;padding:4px 6px;
 background:rgba(127,127,127,.08);border-radius:4px;font-size:12px}
.mmreact details>summary{cursor:pointer;color:#777;margin-left:14px}
.mmreact .mmr-err{color:#c0392b}
.mmreact .mmr-answer{background:rgba(60,180,75,.15);border-left:3px solid rgb(60,180,75);padding:4px 10px;margin:6px 0}
.mmreact .mmr-stop{background:rgba(230,25,75,.12);border-left:3px solid rgb(230,25,75);padding:4px 10px;margin:6px 0}
.mmreact .mmr-running{color:#888;font-style:italic}
.mmreact figure{display:inline-block;margin:4px 12px 4px 0;vertical-align:top}
.mmreact figure img{max-width:100%;border:1px solid rgba(127,127,127,.35)}
.mmreact figcaption{color:#888;font-size:12px}
.mmreact .mmr-legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 8px;vertical-align:-1px}
.mmreact h4{margin:10px 0 4px}
.mmreact .mmr-fact{border-bottom:2px solid rgb(60,180,75)}
.mmreact .mmr-unsupported{background:rgba(230,25,75,.18);border-bottom:2px solid rgb(230,25,75)}
.mmreact .mmr-grounding{font-size:12px;margin:2px 0 2px 14px}
</style>"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _wrap(body: str) -> str:
    return f'<div class="mmreact">{STYLE}{body}</div>'


def _text_block(text: str, *, css: str = "") -> str:
    """Text in a ``<pre>``; long text folds into ``<details>`` with its first line as summary."""
    cls = f' class="{css}"' if css else ""
    pre = f"<pre{cls}>{_e(text)}</pre>"
    lines = text.splitlines()
    if len(text) <= FOLD_CHARS and len(lines) <= FOLD_LINES:
        return pre
    first = lines[0] if lines else ""
    first = first if len(first) <= 90 else first[:89] + "\u2026"
    return (f"<details><summary>{_e(first)} <span class=\"mmr-meta\">({len(lines)} lines, "
            f"{len(text)} characters)</span></summary>{pre}</details>")


def png_data_uri(image: PILImage.Image, max_width: int = MAX_IMAGE_WIDTH) -> str:
    """A ``data:image/png;base64,...`` URI of ``image``, scaled down to ``max_width`` if wider."""
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- pieces ------------------------------------------------------------------------------------
def marked_answer(answer: str, check: Grounding | None) -> str:
    """The answer, escaped, with each checked fact marked: supported ones underlined (their support
    as a tooltip), unsupported ones highlighted."""
    if check is None or not check.facts:
        return _e(answer)
    out: list[str] = []
    pos = 0
    for f in sorted(check.facts, key=lambda f: f.start):
        if f.start < pos or answer[f.start:f.end] != f.text:
            continue
        css = "mmr-fact" if f.supported else "mmr-unsupported"
        out.append(_e(answer[pos:f.start]))
        out.append(f'<span class="{css}" title="{_e(support_text(f))}">{_e(f.text)}</span>')
        pos = f.end
    out.append(_e(answer[pos:]))
    return "".join(out)


def grounding_html(check: Grounding) -> str:
    head, *facts = grounding_lines(check)
    css = "mmr-meta" if check.supported else "mmr-err"
    items = "".join(f"<div>{_e(line.strip())}</div>" for line in facts)
    return f'<div class="mmr-grounding {css}">{_e(head)}{items}</div>'



def call_body(call: CallRecord) -> str:
    tag = f", {call.reuse_note}" if call.reuse_note else ""
    css = "mmr-call mmr-err" if call.error else "mmr-call"
    return (f'<div class="{css}">Action: <code>{_e(call.call)}</code> '
            f'<span class="mmr-meta">({_ms(call.seconds)}{tag})</span>'
            f"{_text_block(call.text, css='mmr-err' if call.error else '')}</div>")


def step_meta(step: StepRecord) -> str:
    parts = [f"llm {_ms(step.llm_seconds)}"]
    if step.calls:
        parts.append(f"tools {_ms(step.tool_seconds)}")
    if step.prompt_tokens is not None or step.completion_tokens is not None:
        parts.append(f"{step.prompt_tokens or 0}+{step.completion_tokens or 0} tokens")
    return " \u00b7 ".join(parts)


def step_body(step: StepRecord) -> str:
    v = describe(step)
    out = [f'<li class="mmr-step"><div class="mmr-head">Step {v.index} '
           f'<span class="mmr-meta">{_e(step_meta(step))}</span></div>']
    if v.decision:
        out.append(f'<div class="mmr-meta">({_e(v.decision)})</div>')
    if v.warning:
        out.append(f'<div class="mmr-err">(warning: {_e(v.warning)})</div>')
    if v.thought:
        out.append(f'<div class="mmr-thought">Thought: {_e(v.thought)}</div>')
    out.extend(call_body(c) for c in step.calls)
    if v.unusable:
        out.append(f'<div class="mmr-err">Unusable reply: {_e(v.unusable)}</div>')
        out.append(_text_block(v.reply))
    if v.answer is not None:
        out.append(f"<div><b>Final Answer:</b> {marked_answer(v.answer, v.grounding)}</div>")
        if v.grounding is not None:
            out.append(grounding_html(v.grounding))
        if v.reask:
            out.append(f'<div class="mmr-meta">(answer not taken; the engine asked again: {_e(v.reask)})</div>')
    out.append("</li>")
    return "".join(out)


def _outcome(trace: Trace) -> str:
    if trace.answer is not None:
        return f'<div class="mmr-answer"><b>Answer:</b> {marked_answer(trace.answer, trace.grounding)}</div>'
    return f'<div class="mmr-stop"><b>Stopped ({_e(trace.status)}):</b> {_e(trace.message or "")}</div>'


def _summary(trace: Trace) -> str:
    tokens = f", {trace.tokens} tokens" if trace.tokens is not None else ""
    return (f'<div class="mmr-meta">{len(trace.steps)} steps in {trace.seconds:.2f} s (llm '
            f"{trace.llm_seconds:.2f} s, tools {trace.tool_seconds:.2f} s{tokens}; {_e(trace.llm)})</div>")


def trace_body(trace: Trace, *, outcome: bool = True) -> str:
    images = ", ".join(f"{_e(i.handle)} <span class=\"mmr-meta\">{_e(i.source)} ({i.width}x{i.height})</span>"
                       for i in trace.images)
    out = [f'<div class="mmr-q"><b>Question:</b> {_e(trace.question)}</div>']
    if images:
        out.append(f"<div>Images: {images}</div>")
    out.append('<ol class="mmr-steps">' + "".join(step_body(s) for s in trace.steps) + "</ol>")
    if trace.prefetched:
        items = "; ".join(f"{_e(p.call)} ({'used' if p.used else 'unused'}"
                          f"{'' if p.seconds is None else ', ' + _ms(p.seconds)}{', failed' if p.error else ''})"
                          for p in trace.prefetched)
        out.append(f'<div class="mmr-meta">Prefetched: {items}</div>')
    if outcome:
        out.extend([_outcome(trace), _summary(trace)])
    return "".join(out)


def _legend(kinds: set[str]) -> str:
    from .boxes import COLOURS

    names = {"detect": "objects", "dense": "regions", "ocr": "text lines", "other": "other boxes",
             "answer": "the answer's support"}
    return '<div class="mmr-legend mmr-meta">' + "".join(
        f'<span style="background:rgb{rgb}"></span>{names[k]}' for k, rgb in COLOURS.items() if k in kinds) + "</div>"


def figures(images: dict[str, Any], artifacts_for: Callable[[str], list[Any]]) -> str:
    """Annotated images as ``<figure>``s, with a colour legend when any box was drawn."""
    from .boxes import annotate, findings

    out: list[str] = []
    kinds: set[str] = set()
    for handle, img in images.items():
        arts = artifacts_for(handle)
        kinds.update(f.kind for f in findings(arts, img.width, img.height))
        uri = png_data_uri(annotate(img, arts))
        out.append(f'<figure><img src="{uri}" alt="{_e(handle)}"><figcaption>{_e(handle)} '
                   f"({img.width}x{img.height})</figcaption></figure>")
    if not out:
        return ""
    return "<div>" + "".join(out) + "</div>" + (_legend(kinds) if kinds else "")


def _result_figures(results: Sequence[Result]) -> str:
    from .boxes import calls_for

    images: dict[str, Any] = {}
    for r in results:
        used = {i.handle for i in r.trace.images}
        images.update({h: img for h, img in r.images.items() if h in used})

    def artifacts_for(handle: str) -> list[Any]:
        distinct = {c.call: c for r in results for c in calls_for(r, handle)}  # a call repeated in a later turn
        return list(distinct.values())                                         # draws once

    return figures(images, artifacts_for)


# -- public renderers (the ``_repr_html_`` hooks delegate here) ----------------------------------
def result_html(result: Result, *, images: bool = True) -> str:
    """A run: question, steps, answer or stop reason, timings and the annotated image(s)."""
    return _wrap(trace_body(result.trace) + (_result_figures([result]) if images else ""))


def trace_html(trace: Trace) -> str:
    return _wrap(trace_body(trace))


def step_html(step: StepRecord) -> str:
    return _wrap(f'<ol class="mmr-steps">{step_body(step)}</ol>')


def call_html(call: CallRecord) -> str:
    return _wrap(call_body(call))


def observation_html(obs: Observation) -> str:
    body = _text_block(obs.text, css="mmr-err" if obs.error else "")
    if obs.artifact is not None:
        art = json.dumps(obs.artifact, ensure_ascii=False, indent=1, default=repr)
        body += f"<details><summary>artifact</summary><pre>{_e(art)}</pre></details>"
    return _wrap(body)


def chat_html(turns: Sequence[Result]) -> str:
    """A chat's turns in order, then each image once with all turns' boxes drawn on it."""
    if not turns:
        return _wrap('<div class="mmr-meta">(no turns yet)</div>')
    body = "".join(f"<h4>Turn {i}</h4>{trace_body(r.trace)}" for i, r in enumerate(turns, 1))
    return _wrap(body + _result_figures(turns))


# -- live display --------------------------------------------------------------------------------
def running_html(question: str, steps: Sequence[StepRecord], partial: str = "", *,
                 state: str = "running") -> str:
    """The steps so far of a run still in progress (``state`` says "running" or "failed"), with
    the model's text as it streams."""
    body = (f'<div class="mmr-q"><b>Question:</b> {_e(question)}</div><ol class="mmr-steps">'
            + "".join(step_body(s) for s in steps) + "</ol>")
    body += f'<div class="mmr-running">{_e(state)} at step {len(steps) + 1}\u2026</div>'
    if partial:
        body += f"<pre>{_e(partial)}</pre>"
    return _wrap(body)


def _kernel_display() -> Any:
    """IPython's ``display`` when running inside a kernel (Jupyter, VS Code), else ``None``."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    return display if shell is not None and getattr(shell, "kernel", None) is not None else None


def live(agent_or_chat: Any, question: str, images: Sequence[ImageSource] | ImageSource = (),
         *, interval: float = 0.2) -> Result:
    """Ask ``question`` and show each step as it happens; returns the :class:`Result`.

    In a notebook one output area is updated in place (``display(..., display_id=True)``),
    streaming the model's text at most every ``interval`` seconds, and ends as the result's HTML.
    Outside a kernel each step is printed as plain text. Pass a :class:`Chat` to keep the turn in
    a session; an :class:`Agent` runs a fresh one (it is told from a chat by having no ``ask``: the
    views do not import the agent).
    """
    chat = agent_or_chat if hasattr(agent_or_chat, "ask") else agent_or_chat.chat()
    display = _kernel_display()
    if display is None:
        result = chat.ask(question, images, on_step=lambda s: print(step_text(s), flush=True))
        print(f"Answer: {result.answer}" if result.answer is not None
              else f"No answer ({result.status}): {result.message}", flush=True)
        return result

    from IPython.display import HTML

    steps: list[StepRecord] = []
    partial: list[str] = []
    last = [0.0]
    handle = display(HTML(running_html(question, steps)), display_id=True)

    def on_step(step: StepRecord) -> None:
        steps.append(step)
        partial.clear()
        handle.update(HTML(running_html(question, steps)))

    def on_text(chunk: str) -> None:
        partial.append(chunk)
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            handle.update(HTML(running_html(question, steps, "".join(partial))))

    try:
        result = chat.ask(question, images, on_step=on_step, on_text=on_text)
    except Exception:
        handle.update(HTML(running_html(question, steps, "".join(partial), state="failed")))
        raise
    handle.update(HTML(result_html(result)))
    return result

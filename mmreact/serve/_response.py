"""Results and steps as OpenAI ``chat.completion`` objects and ``chat.completion.chunk`` events.

- ``content`` is the answer (or, when the run stopped without one, ``No answer: <why>``).
- ``reasoning_content`` is the readable trace: each step's model text (``Thought: ...``,
  ``Action: ocr(image_1)``), then each observation. Streaming sends the model text as it is
  written and the observations in one chunk per finished step; their concatenation is the same text.
  An answer step ends with its grounding check (``Grounding (...): ...``, one line per fact, an
  unsupported one marked ``UNSUPPORTED``; see :mod:`mmreact.grounding`).
- ``mmreact`` (a namespaced extra field) holds the JSON trace: the whole trace on the completion
  (and on the stream's last choice chunk), each finished step on its step chunk.
- ``usage`` sums the tokens every step reports.
- Steps are never sent as ``tool_calls``: a client would try to run them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..result import Result
from ..trace import StepRecord, Trace
from ..views.steps import describe

#: trace status -> OpenAI finish_reason
FINISH = {"answered": "stop", "max_steps": "length", "too_many_errors": "stop", "llm_error": "stop"}
MAX_OBSERVATION_CHARS = 4000


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def step_reasoning(step: StepRecord, *, include_text: bool = True) -> str:
    """One step as readable text: its model text (unless already streamed), then each observation,
    then (for an answer) its grounding check, then a blank line."""
    v = describe(step)
    parts = [v.reply if include_text else ""]
    for call in v.calls:
        text = call.text if len(call.text) <= MAX_OBSERVATION_CHARS else call.text[:MAX_OBSERVATION_CHARS] + " [...]"
        # Whether a call was prefetched depends on the deployment (where the experts run), not on
        # the question, so the readable steps leave it out: Ray Serve and `mmreact serve` agree.
        reused = f" ({call.reuse})" if call.reuse and call.reuse != "prefetched" else ""
        parts.append(f"\n\nObservation from {call.call}{reused}:\n{text}")
    if v.unusable:
        parts.append(f"\n\n(The reply could not be used: {v.unusable})")
    if v.grounding_lines:
        parts.append("\n\n" + "\n".join(v.grounding_lines))
    if v.reask:
        parts.append(f"\n\n(Answer not taken; asked again: {v.reask})")
    return "".join(parts) + "\n\n"


def reasoning_text(trace: Trace) -> str:
    return "".join(step_reasoning(s) for s in trace.steps).strip()


def answer_text(result: Result) -> str:
    return result.answer if result.answer is not None else f"No answer: {result.message}"


def usage(steps: tuple[StepRecord, ...] | list[StepRecord]) -> dict[str, int]:
    prompt = sum(s.prompt_tokens or 0 for s in steps)
    completion = sum(s.completion_tokens or 0 for s in steps)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def trace_data(trace: Trace) -> dict[str, Any]:
    return trace.model_dump(mode="json")


def completion(result: Result, *, model: str, cid: str | None = None) -> dict[str, Any]:
    """The non-streaming response body."""
    trace = result.trace
    return {
        "id": cid or completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer_text(result), "reasoning_content": reasoning_text(trace)},
            "finish_reason": FINISH.get(trace.status, "stop"),
        }],
        "usage": usage(trace.steps),
        "mmreact": {"status": trace.status, "message": trace.message, "trace": trace_data(trace)},
    }


class Chunks:
    """Builds the ``chat.completion.chunk`` events of one streamed response."""

    def __init__(self, model: str, cid: str | None = None) -> None:
        self.model = model
        self.id = cid or completion_id()
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra)

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def text(self, piece: str) -> dict[str, Any]:
        return self.delta({"reasoning_content": piece})

    def step(self, step: StepRecord, *, text_streamed: bool) -> dict[str, Any]:
        return self.delta({"reasoning_content": step_reasoning(step, include_text=not text_streamed)},
                          mmreact={"step": step.model_dump(mode="json")})

    def answer(self, result: Result) -> dict[str, Any]:
        return self.delta({"content": answer_text(result)})

    def finish(self, result: Result) -> dict[str, Any]:
        trace = result.trace
        return self.delta({}, FINISH.get(trace.status, "stop"),
                          mmreact={"status": trace.status, "message": trace.message, "trace": trace_data(trace)})

    def usage(self, steps: tuple[StepRecord, ...] | list[StepRecord]) -> dict[str, Any]:
        return self._chunk([], usage=usage(steps))

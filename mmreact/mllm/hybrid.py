"""Hybrid: an end-to-end multimodal model as one more tool of the text-only planner.

The agent keeps its explicit experts (OCR text, boxes, tags) and can also ask a VLM a free-form
question about one image ("ask_vlm(image_1, question='what breed is this dog?')"); the VLM's answer
comes back as the observation. This combines what each side is good at (MM-Vet: tools win on OCR,
spatial and math, end-to-end models on recognition and knowledge).

Decisions:

* Any :class:`~mmreact.mllm.base.System` can back the tool (an end-to-end model, or even another
  agent); its ``run(question, [image])`` answer is the observation text and the artifact records the
  answer, the backing system's name and its timing/tokens.
* A system that fails (unreachable server, missing weights) becomes an error observation the planner
  can read, like any failing tool.
* Results are cached by image content + question + backing system (``cache_version`` holds the
  system's name): end-to-end backends decode greedily, so asking again gives the same answer.
"""

from __future__ import annotations

from typing import Any

from ..errors import MMReactError, one_line
from ..images import Image
from ..observation import Observation
from ..tools import FunctionTool, Tool
from .base import System

__all__ = ["vlm_tool"]

DESCRIPTION = (
    "Ask an end-to-end vision-language model a free-form question about one image and get its short "
    "answer. Good for recognising things, scenes and styles; it may be wrong about exact text, counts and "
    "positions, which the other tools measure."
)


def vlm_tool(system: System, name: str = "ask_vlm", description: str | None = None, *,
             cacheable: bool = True) -> Tool:
    """A tool ``name(image: Image, question: str)`` whose observation is ``system``'s answer."""
    system_name = _system_name(system)

    def ask_vlm(image: Image, question: str) -> Observation:
        """Ask the vision-language model about one image.

        Args:
            image: the image to ask about
            question: the question, in plain words
        """
        try:
            result = system.run(question, [image])
        except MMReactError as exc:
            return Observation.failure(f"{system_name} could not answer: {one_line(exc)}")
        answer = result.answer
        trace = result.trace
        artifact: dict[str, Any] = {
            "answer": answer, "model": trace.llm or system_name, "seconds": round(trace.seconds, 4),
            "tokens": trace.tokens,
        }
        if answer is None:
            return Observation(text=f"Error: {system_name} gave no answer ({trace.message}).", artifact=artifact,
                               error=True)
        return Observation(text=answer or "(empty answer)", artifact=artifact)

    made = FunctionTool(ask_vlm, name=name, description=description or DESCRIPTION, cacheable=cacheable)
    made.cache_version = f"vlm:{system_name}"
    return made


def _system_name(system: Any) -> str:
    name = getattr(system, "name", None)
    if isinstance(name, str) and name:
        return name
    llm = getattr(system, "llm", None)  # an Agent names its LLM
    llm_name = getattr(llm, "name", None)
    if isinstance(llm_name, str) and llm_name:
        return f"agent({llm_name})"
    return type(system).__name__

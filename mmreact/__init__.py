"""mmreact: give any text-only LLM eyes.

A ReAct agent reasons in text and calls vision experts (captioning, dense captioning, tagging,
YOLO detection, OCR); each expert turns pixels into text that is spliced back into the prompt,
and every answer is checked against what the experts saw.

    >>> from mmreact import Agent
    >>> Agent().run("What is the total?", images=["receipt.png"]).answer

This module is what a user needs: the agent and its results, tools, images, the records of a
run, and the errors. Writing a backend or a system has its own places: :mod:`mmreact.llms`
(``LLM``, ``LLMRequest``, ``Completion``, ``Message``), :mod:`mmreact.mllm` (end-to-end systems),
:mod:`mmreact.loading` (load a model once per process), :mod:`mmreact.findings` (what an expert
found). Nothing heavy is imported here: models load lazily on first use.
"""

from __future__ import annotations

from .agent import Agent, Chat
from .errors import (
    ConfigError,
    ImageError,
    LLMError,
    MMReactError,
    ToolDefinitionError,
    ToolNotFoundError,
    WeightsMissingError,
)
from .findings import Finding, Findings
from .grounding import Evidence, Fact, Grounding
from .images import Image, load_image
from .llms import load_llm
from .llms.scripted import ScriptedLLM
from .observation import Observation
from .result import Result
from .tools import Tool, tool
from .trace import CallRecord, StepRecord, Trace

__version__ = "0.1.0"
__all__ = [
    "Agent", "Chat", "Result", "Tool", "tool", "Image", "load_image", "Observation", "ScriptedLLM", "load_llm",
    "Trace", "StepRecord", "CallRecord", "Grounding", "Fact", "Evidence", "Finding", "Findings", "MMReactError",
    "ImageError", "ConfigError", "LLMError", "ToolDefinitionError", "ToolNotFoundError", "WeightsMissingError",
]

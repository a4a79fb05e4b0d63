"""mmreact: give any text-only LLM eyes.

A ReAct agent reasons in text and calls vision experts (captioning, dense captioning, tagging,
YOLO detection, OCR); each expert turns pixels into text that is spliced back into the prompt.

    >>> from mmreact import Agent
    >>> Agent().run("What is the total?", images=["receipt.png"]).answer

Nothing heavy is imported here: models load lazily on first use.
"""

from __future__ import annotations

from .agent import Agent, Chat, Result
from .errors import (
    ConfigError,
    ImageError,
    LLMError,
    MMReactError,
    ToolDefinitionError,
    ToolNotFoundError,
    WeightsMissingError,
)
from .images import Image, load_image
from .llms.base import LLM, Completion, LLMRequest, Message
from .llms.scripted import ScriptedLLM
from .observation import Observation
from .tools import Tool, tool
from .trace import CallRecord, StepRecord, Trace

__version__ = "0.1.0"
__all__ = [
    "Agent", "Chat", "Result", "Tool", "tool", "Image", "load_image", "Observation", "LLM", "Completion",
    "LLMRequest", "Message", "ScriptedLLM", "Trace", "StepRecord", "CallRecord", "MMReactError", "ImageError",
    "ConfigError", "LLMError", "ToolDefinitionError", "ToolNotFoundError", "WeightsMissingError",
]

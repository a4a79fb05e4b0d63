"""Typed errors. Every message is one sentence a user can act on.

Errors the *model* can act on (unknown tool, bad arguments, a tool that failed) never
raise: they go back to the model as observations. These exceptions are for the *user*.
"""

from __future__ import annotations

from typing import Any


class MMReactError(Exception):
    """Base class of every error mmreact raises on purpose."""


class ImageError(MMReactError, ValueError):
    """An image could not be loaded or failed validation."""


class ToolDefinitionError(MMReactError, TypeError):
    """A tool is declared wrongly (the message names the tool)."""


class ToolNotFoundError(MMReactError, KeyError):
    """A tool name asked for by the user does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(MMReactError, ValueError):
    """A setting, spec string or input file the user gave is wrong."""


class LLMError(MMReactError, RuntimeError):
    """The LLM backend failed (unreachable, timed out, out of replies...).

    ``trace`` holds the partial :class:`~mmreact.trace.Trace` of the run when the failure happened
    mid-run (typed ``Any`` here: the errors sit below everything, the trace included).
    """

    def __init__(self, message: str, *, trace: Any = None) -> None:
        super().__init__(message)
        self.trace = trace

    def with_trace(self, trace: Any) -> LLMError:
        self.trace = trace
        return self


class LLMWarning(UserWarning):
    """The LLM backend answers, but not as set up: a model server that rejected or ignored the step
    grammar, whose replies are then free and may not parse. Issued once per backend and message
    (Python shows a ``UserWarning`` by default; ``mmreact ask`` prints it as ``mmreact: warning: ...``)."""


class WeightsMissingError(MMReactError, RuntimeError):
    """A model's weights are not on this machine (the message says how to provide them)."""


def one_line(exc: BaseException, limit: int = 500) -> str:
    """A single-line ``Type: message`` summary of an exception, for observations and logs."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    if not isinstance(exc, MMReactError):
        text = f"{exc.__class__.__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."



class NativeCrashError(ConfigError):
    """A native model library (llama.cpp) crashed in a check run before it could crash mmreact's process."""

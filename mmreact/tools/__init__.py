"""Tools: how one is declared (:mod:`.base`), where they come from (:mod:`.registry`: built-in
experts and ``mmreact.tools`` entry-point plug-ins), whether each can run here (:mod:`.status`,
``mmreact tools``), and every tool as a LangChain tool (:mod:`.langchain`)."""

from __future__ import annotations

from .base import (
    NAME_RE,
    ArgumentError,
    FunctionTool,
    Param,
    Tool,
    as_tool,
    code_hash,
    tool,
)

__all__ = ["NAME_RE", "ArgumentError", "FunctionTool", "Param", "Tool", "as_tool", "code_hash", "tool"]

"""mmreact tools as LangChain tools (``langchain_core.tools.BaseTool``).

    from mmreact.tools.langchain import langchain_tools
    tools = langchain_tools(["ocr", "detect"])     # hand them to create_agent / bind_tools

Decisions:
- ``response_format="content_and_artifact"``: the content is the observation text the model reads,
  the artifact is the tool's structured artifact (``{}`` when a tool has none, because LangChain
  treats a ``None`` artifact as "no artifact").
- Image parameters are strings in the schema: a file path, or a handle (``image_1``) that the
  optional ``images`` resolver maps to an image (an :class:`~mmreact.images.ImageTable`, a mapping,
  or a callable returning a path / PIL image / array, or ``None`` for "not mine").
- Errors the model can act on (bad arguments, an unknown file, a tool that failed or whose weights
  are missing) come back as the tool message content ``"Error: ..."`` with status ``error``, never
  as exceptions: the same contract as mmreact's own agent.
- Results go through the tool's shared result cache, like calls made by :class:`mmreact.Agent`.
- This module imports langchain-core; ``import mmreact`` never imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Union

import pydantic
from langchain_core.tools import BaseTool, ToolException

from ..errors import MMReactError, one_line
from ..images import HANDLE_RE, Image, ImageSource, ImageTable, load_image
from . import ArgumentError, Tool, as_tool

#: Maps an image handle to an image: an ImageTable, a mapping, or a callable (``None`` = unknown).
ImageResolver = Union[ImageTable, Mapping[str, ImageSource], Callable[[str], "ImageSource | None"]]


def _validation_message(tool: Tool) -> Callable[[Any], str]:
    def message(exc: Any) -> str:
        errors = exc.errors() if hasattr(exc, "errors") else []
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())) or 'arguments'}: {e.get('msg', '')}" for e in errors
        ) or one_line(exc)
        return f"Error: bad arguments for {tool.name}: {problems}. Usage: {tool.usage()}"

    return message


def args_schema(tool: Tool, with_handles: bool = False) -> type[pydantic.BaseModel]:
    """A pydantic model of ``tool``'s arguments, image parameters as path (or handle) strings."""
    fields: dict[str, Any] = {}
    for p in tool.params:
        if p.is_image:
            what = "path of an image file" + (", or an image handle such as image_1" if with_handles else "")
            description = what + (f"; {p.description}" if p.description else "")
            annotation: Any = str
        else:
            description, annotation = p.description, p.annotation
        default = ... if p.required else p.default
        fields[p.name] = (annotation, pydantic.Field(default, description=description or None))
    return pydantic.create_model(
        f"{tool.name}_input", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )


class MMReactTool(BaseTool):
    """A LangChain tool that runs one mmreact :class:`~mmreact.tools.Tool`."""

    mm_tool: Tool
    images: Any = None
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: Any = True

    def _resolve_image(self, value: str) -> Image:
        resolver = self.images
        found: Any = None
        if resolver is not None:
            found = resolver(value) if callable(resolver) else resolver.get(value)
        if found is not None:
            return load_image(found)
        if resolver is not None and HANDLE_RE.match(value) and not os.path.exists(value):
            raise ToolException(f"Error: '{value}' is neither a known image handle nor an image file.")
        return load_image(value)

    def _run(self, **kwargs: Any) -> tuple[str, Any]:
        tool = self.mm_tool
        try:
            bound = tool.bind((), kwargs)
            for name in tool.image_params:
                bound[name] = self._resolve_image(bound[name])
        except (ArgumentError, MMReactError) as exc:
            raise ToolException(f"Error: {one_line(exc)}") from None
        try:
            obs, _ = tool.invoke_cached(bound)
        except MMReactError as exc:
            raise ToolException(f"Error: {tool.name} could not run: {one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a failing tool becomes content the model can read
            raise ToolException(f"Error: {tool.name} failed: {one_line(exc)}") from None
        if obs.error:
            raise ToolException(obs.text)
        return obs.text, ({} if obs.artifact is None else obs.artifact)


def as_langchain_tool(tool: Tool | str | Callable[..., Any], images: ImageResolver | None = None) -> BaseTool:
    """Wrap an mmreact tool (object, class, function or registered name) as a LangChain ``BaseTool``."""
    if isinstance(tool, str):
        from .registry import resolve_tools

        mm_tool = resolve_tools([tool])[0]
    else:
        mm_tool = as_tool(tool)
    return MMReactTool(
        name=mm_tool.name,
        description=mm_tool.description,
        args_schema=args_schema(mm_tool, with_handles=images is not None),
        mm_tool=mm_tool,
        images=images,
        handle_validation_error=_validation_message(mm_tool),
    )


def langchain_tools(names: Iterable[str | Tool | Callable[..., Any]] | None = None,
                    images: ImageResolver | None = None) -> list[BaseTool]:
    """LangChain tools for ``names`` (``None``: every tool that can run on this machine)."""
    from .registry import resolve_tools

    return [as_langchain_tool(t, images) for t in resolve_tools(names, ready_only=names is None)]

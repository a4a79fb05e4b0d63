"""What a tool returns: text for the LLM plus a structured artifact for code and display."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def jsonable(value: Any) -> Any:
    """Convert an artifact to plain JSON data (dicts, lists, numbers, strings)."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    return repr(value)


@dataclass(frozen=True, slots=True)
class Observation:
    """One tool call's result.

    ``text`` is what the LLM reads; ``artifact`` is JSON-able structured data (boxes, scores,
    strings) for code and display; ``error`` marks an observation that reports a failure.
    Box convention everywhere in mmreact: pixel ``[x1, y1, x2, y2]`` on the original image,
    origin top-left, x to the right, y down.
    """

    text: str
    artifact: Any = None
    error: bool = False

    def _repr_html_(self) -> str:
        from .notebook import observation_html
        return observation_html(self)

    @classmethod
    def failure(cls, message: str) -> Observation:
        return cls(text=f"Error: {message}", artifact=None, error=True)

    @classmethod
    def coerce(cls, value: Any) -> Observation:
        """Turn what a tool function returned into an Observation."""
        if isinstance(value, Observation):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if value is None:
            return cls(text="(no output)")
        data = jsonable(value)
        import json

        return cls(text=json.dumps(data, ensure_ascii=False), artifact=data)

"""What a tool returns: text for the LLM plus a structured artifact for code and display."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .findings import Findings


def utf8_text(text: str) -> str:
    """``text`` unchanged when it encodes as UTF-8, else with the unencodable characters (lone
    surrogates) replaced by ``?``: such text cannot be sent to an LLM API or saved as JSON."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def jsonable(value: Any) -> Any:
    """Convert an artifact to plain JSON data (dicts, lists, numbers, strings)."""
    if isinstance(value, str):
        return utf8_text(value)
    if value is None or isinstance(value, (int, bool)):
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
    return utf8_text(repr(value))


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
        from .views.notebook import observation_html
        return observation_html(self)

    @property
    def findings(self) -> Findings:
        """The artifact, typed (:class:`mmreact.findings.Findings`; none for a failure)."""
        from .findings import Findings

        return Findings.from_call(self)

    @classmethod
    def failure(cls, message: str) -> Observation:
        return cls(text=f"Error: {message}", artifact=None, error=True)

    @classmethod
    def coerce(cls, value: Any) -> Observation:
        """Turn what a tool function returned into an Observation.

        A returned Observation is checked too: text that is not a ``str`` is a tool bug
        (``TypeError``, which the agent reports to the model as the tool failing), and an artifact
        is converted with :func:`jsonable` so that every trace can be saved as JSON. Text that
        cannot be encoded as UTF-8 is repaired with :func:`utf8_text`.
        """
        if isinstance(value, Observation):
            if not isinstance(value.text, str):
                raise TypeError(f"the tool returned an Observation whose text is of type {type(value.text).__name__}, "
                                "not a str")
            text = utf8_text(value.text)
            if text is value.text and value.artifact is None and isinstance(value.error, bool):
                return value
            return cls(text=text, artifact=jsonable(value.artifact), error=bool(value.error))
        if isinstance(value, str):
            return cls(text=utf8_text(value))
        if value is None:
            return cls(text="(no output)")
        data = jsonable(value)
        import json

        return cls(text=json.dumps(data, ensure_ascii=False), artifact=data)

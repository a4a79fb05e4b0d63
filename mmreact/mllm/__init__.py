"""End-to-end multimodal systems (vision encoder -> bridge -> LLM), to compare with and combine with
the tool-using agent. Every system has ``run(question, images) -> result`` with ``.answer`` and
``.trace`` (see :class:`System`), :class:`mmreact.Agent` included.

===================================  =====================================================
spec                                 system
===================================  =====================================================
``agent`` / ``agent:LLM_SPEC``       :class:`mmreact.Agent` with that LLM (tools that can run here)
``mllm:MODEL_ID_OR_PATH``            :class:`~mmreact.mllm.hf.HFMultimodal` (transformers)
``openai-vision:MODEL[@BASE_URL]``   :class:`~mmreact.mllm.openai_vision.OpenAIVision`
===================================  =====================================================

A third-party package adds a kind of system through the entry-point group ``mmreact.systems``
(the entry's name is the spec prefix; its object takes the text after the colon and the options),
as LLM backends do (:mod:`mmreact.llms`). Nothing heavy is imported here; torch and transformers
load on the first question.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._plugins import Entry, builtins, discover
from ..errors import ConfigError, one_line
from .base import Bridge, EndToEndSystem, Generation, RunResult, System

if TYPE_CHECKING:
    from .hf import HFMultimodal
    from .hybrid import vlm_tool
    from .openai_vision import OpenAIVision

__all__ = ["BUILTIN_SYSTEMS", "systems", "Bridge", "EndToEndSystem", "Generation", "HFMultimodal", "OpenAIVision", "RunResult",
           "System", "load_system", "vlm_tool"]

GROUP = "mmreact.systems"
#: mmreact's own systems, registered like a plug-in's (:mod:`mmreact._plugins`): spec prefix ->
#: "module:factory"; the factory takes the text after the colon (and options).
BUILTIN_SYSTEMS: dict[str, str] = {
    "agent": "mmreact.agent:Agent",
    "mllm": "mmreact.mllm.hf:HFMultimodal",
    "openai-vision": "mmreact.mllm.openai_vision:OpenAIVision.from_spec",
}
_LAZY = {"HFMultimodal": "mmreact.mllm.hf", "OpenAIVision": "mmreact.mllm.openai_vision",
         "vlm_tool": "mmreact.mllm.hybrid"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmreact.mllm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def systems(refresh: bool = False) -> dict[str, Entry]:
    """Every system kind: spec prefix -> its entry (built-ins first, then ``mmreact.systems`` plug-ins)."""
    return discover(GROUP, builtins(GROUP, BUILTIN_SYSTEMS), refresh=refresh)[0]


def load_system(spec: System | str, **options: Any) -> System:
    """A :class:`System` from a spec string (see the table above), or ``spec`` itself when it
    already has a ``run`` method. ``options`` go to the system's constructor (e.g. ``device``,
    ``max_new_tokens`` for ``mllm:``; ``tools``, ``max_steps`` for ``agent``)."""
    if not isinstance(spec, str):
        if callable(getattr(spec, "run", None)):
            return spec
        raise ConfigError(f"Cannot use a {type(spec).__name__} as a system; pass a spec string or an object with run().")
    text = spec.strip()
    prefix, sep, rest = text.partition(":")
    rest = rest.strip()
    found = systems()
    entry = found.get(prefix.strip().lower())
    if entry is None:
        others = ", ".join(f"{p}:..." for p in found if p not in BUILTIN_SYSTEMS)
        raise ConfigError(
            f"Unknown system spec '{spec}'; use agent, agent:LLM_SPEC, mllm:MODEL_ID_OR_PATH "
            f"or openai-vision:MODEL[@BASE_URL]{', or ' + others if others else ''}."
        )
    try:
        factory = entry.entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is one sentence
        if entry.builtin:
            raise
        raise ConfigError(f"The system '{entry.name}' from the package {entry.distribution} failed to load "
                          f"({one_line(exc)}).") from None
    if prefix.strip().lower() == "agent":
        return factory(llm=rest or None, **options)
    if not sep or not rest:
        raise ConfigError(f"The system spec '{spec}' needs a value after '{prefix.strip()}:'.")
    return factory(rest, **options)

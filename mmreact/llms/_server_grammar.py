"""The step language on the wire: how each OpenAI-compatible server is told to keep a reply in it.

mmreact builds every agent step's language itself (:func:`mmreact.llms.grammar.step_grammar`,
rendered as GBNF and as a regular expression). In-process backends decode under it; the
``openai:`` backend sends it with the chat-completions request, in the field the server reads:

================  ===========================================  ======================================
``grammar=``      request body                                 server
================  ===========================================  ======================================
``llamacpp``      ``"grammar": GBNF``                          llama.cpp's ``llama-server`` and
                  (plus ``"repeat_penalty": 1.0``)             llama-cpp-python's server
``vllm``          ``"structured_outputs": {"grammar": GBNF}``  vLLM 0.10.2 or later (xgrammar and
                                                               guidance backends read GBNF)
``vllm-regex``    ``"structured_outputs": {"regex": RE}``      vLLM 0.10.2 or later, any backend
``sglang``        ``"ebnf": GBNF``                             SGLang (xgrammar, llguidance backends)
``sglang-regex``  ``"regex": RE``                              SGLang, any backend (outlines too)
``ollama``        nothing: unconstrained text ReAct            Ollama (see :data:`OLLAMA_NOTE`)
``none``          nothing: unconstrained text ReAct            any server
``auto``          one of the above, from ``GET /v1/models``    see :func:`detect`
================  ===========================================  ======================================

Decisions:

* **GBNF first.** llama.cpp reads GBNF; xgrammar (the default structured-output engine of vLLM
  and SGLang) and llguidance read the same GGML BNF, so ``vllm`` and ``sglang`` send the GBNF that
  llama.cpp gets. The ``-regex`` kinds are for servers running a regex-only engine (outlines); the
  regex is :func:`portable_regex` of mmreact's own, written for the common subset of Python's
  ``re``, Rust's ``regex`` (llguidance) and xgrammar's regex syntax.
* **vLLM: ``structured_outputs``** (added in vLLM 0.10.2; the older ``guided_grammar`` /
  ``guided_regex`` fields were removed in 0.12.0, and vLLM answers requests carrying them with HTTP
  200 and an unconstrained reply). Older vLLM versions are not targeted: they ignore the new field
  the same way, and the ``openai:`` backend then records that the reply left the language.
* **llama.cpp: ``repeat_penalty`` 1.0**, as in-process: llama-cpp-python's server otherwise
  applies 1.1, which pushes a model away from the tool names and handles it must repeat.
* **Lengths through ``max_tokens``, not the grammar** (:func:`served`). xgrammar builds a token
  mask for every position of a grammar before decoding, and a bounded run (the ``FULL`` thought's
  ``[^\\r\\n]{0,999}``, an answer's ``{0,1999}``, the ``EMBEDDED`` answer's ``{0,199}``) is a thousand
  positions: with a 151k-token vocabulary that took 17 to 22 s per step on this project's 2-core
  machine, and the language changes every step, so the server compiles it each time. Sent
  unbounded (``[^\\r\\n]*``), the same step compiles in under 0.1 s (``python tools/bench_grammar.py``).
  The language is otherwise the same; the request keeps the token budget the bounds gave
  (longest reply + 8), so every reply the bounded language holds still fits, and a reply that
  would run past a bound is cut by ``max_tokens`` instead (``finish_reason`` ``length``). The
  ``llamacpp`` kind keeps the bounds: llama.cpp checks a grammar token by token and compiles
  nothing ahead, and with the bounds its steps stay those of ``gguf:`` for the same seed.
* **Ollama** cannot be constrained (:data:`OLLAMA_NOTE`).
* **Detection** (``auto``) reads the ``owned_by`` field of ``GET /v1/models``, which each of
  these servers fills with a fixed name of its own: ``llamacpp`` (llama.cpp), ``me``
  (llama-cpp-python), ``vllm``, ``sglang``. Anything else (Ollama, OpenAI, LM Studio, a proxy)
  is ``none``: the replies are not constrained, as before this module existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal, Protocol

from ..errors import ConfigError
from ._gbnf import unbounded
from .formats import TextFormat
from .grammar import EMBEDDED, FULL, StepGrammar, StepOptions

Kind = Literal["auto", "llamacpp", "vllm", "vllm-regex", "sglang", "sglang-regex", "ollama", "none"]
KINDS: tuple[str, ...] = ("auto", "llamacpp", "vllm", "vllm-regex", "sglang", "sglang-regex", "ollama", "none")
#: Kinds whose server decodes under the step language.
CONSTRAINED = frozenset({"llamacpp", "vllm", "vllm-regex", "sglang", "sglang-regex"})
#: ``owned_by`` of ``GET /v1/models`` -> server kind.
OWNED_BY: Mapping[str, str] = {"llamacpp": "llamacpp", "me": "llamacpp", "vllm": "vllm", "sglang": "sglang"}
#: Settings an ``openai:`` spec may carry after ``?`` (``openai:MODEL@URL?grammar=llamacpp&options=embedded``).
SPEC_KEYS = ("grammar", "options", "mode", "seed", "temperature", "max_tokens")
#: Names for :class:`~mmreact.llms.grammar.StepOptions` on the spec (``options=embedded``).
OPTIONS: Mapping[str, StepOptions] = {"full": FULL, "embedded": EMBEDDED}

OLLAMA_NOTE = ("Ollama's structured outputs (its `format` field) take only a JSON schema, which cannot "
               "express mmreact's step language (a free-text thought, then Action lines or a Final Answer), "
               "so steps from Ollama are not constrained and may not parse.")


class Language(Protocol):
    """A :class:`~mmreact.llms.grammar.StepGrammar` or a :class:`~mmreact.llms.formats.TextFormat`."""

    @property
    def gbnf(self) -> str: ...

    @property
    def regex(self) -> str: ...


def check_kind(kind: str) -> str:
    """``kind`` lower-cased, or :class:`ConfigError` naming the known kinds."""
    value = (kind or "").strip().lower()
    if value not in KINDS:
        raise ConfigError(f"Unknown server grammar kind '{kind}'; use one of: {', '.join(KINDS)}.")
    return value


def step_options(value: str | StepOptions | None) -> StepOptions:
    """A :class:`StepOptions` from ``None`` (FULL), a name (``full`` / ``embedded``) or itself."""
    if value is None:
        return FULL
    if isinstance(value, StepOptions):
        return value
    found = OPTIONS.get(str(value).strip().lower())
    if found is None:
        raise ConfigError(f"Unknown step options '{value}'; use one of: {', '.join(OPTIONS)}.")
    return found


def options_name(options: StepOptions) -> str:
    """``full``, ``embedded`` or ``custom``."""
    return next((name for name, o in OPTIONS.items() if o == options), "custom")


def spec_settings(query: str) -> dict[str, Any]:
    """``grammar=llamacpp&options=embedded`` as ``OpenAILLM`` keyword arguments (:data:`SPEC_KEYS`;
    :class:`ConfigError` on a key it does not know or a number that is not one)."""
    from urllib.parse import parse_qsl

    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        key, value = key.strip().lower(), value.strip()
        if key not in SPEC_KEYS:
            raise ConfigError(f"Unknown setting '{key}' in the openai: spec; use {', '.join(SPEC_KEYS)} "
                              "(e.g. openai:MODEL@URL?grammar=llamacpp&options=embedded).")
        if key in ("seed", "temperature", "max_tokens"):
            try:
                out[key] = float(value) if key == "temperature" else int(value)
            except ValueError:
                raise ConfigError(f"The {key} in the openai: spec must be a number, got '{value}'.") from None
        else:
            out[key] = value
    return out


def detect(owned_by: Iterable[str]) -> str:
    """The server kind from the ``owned_by`` fields of ``GET /v1/models`` (``none`` when unknown)."""
    kinds = {OWNED_BY.get(str(o).strip().lower()) for o in owned_by}
    kinds.discard(None)
    return kinds.pop() if len(kinds) == 1 else "none"  # type: ignore[return-value]


def sampling_fields(kind: str) -> dict[str, Any]:
    """Sampling settings a kind needs so that its steps match mmreact's in-process llama.cpp."""
    return {"repeat_penalty": 1.0} if kind == "llamacpp" else {}


def served(kind: str, language: StepGrammar | TextFormat) -> StepGrammar | TextFormat:
    """The language a server of ``kind`` is sent: the same, with its long runs of one character
    class unbounded (:func:`~mmreact.llms._gbnf.unbounded`), except for llama.cpp, which keeps
    the bounds (see the module docstring)."""
    if kind == "llamacpp":
        return language
    if isinstance(language, StepGrammar):
        return replace(language, bounded=False)
    return TextFormat(unbounded(language.node), name=language.name)


def language_fields(kind: str, language: Language) -> dict[str, Any]:
    """The request-body fields that carry ``language`` to a server of ``kind`` (``{}``: none)."""
    if kind == "llamacpp":
        return {"grammar": language.gbnf}
    if kind == "vllm":
        return {"structured_outputs": {"grammar": language.gbnf}}
    if kind == "vllm-regex":
        return {"structured_outputs": {"regex": portable_regex(language.regex)}}
    if kind == "sglang":
        return {"ebnf": language.gbnf}
    if kind == "sglang-regex":
        return {"regex": portable_regex(language.regex)}
    return {}


#: Characters that stay escaped outside a character class: the metacharacters of every engine.
_META = frozenset("\\.^$|?*+()[]{}")
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\x0b", "\f": "\\x0c"}


def portable_regex(rx: str) -> str:
    """mmreact's regex (Python ``re.escape`` for literals) in the syntax every engine reads.

    ``re.escape`` also escapes space, ``#``, ``&``, ``~``, ``-`` and line breaks, which Python reads
    as the characters themselves but xgrammar warns about and some engines reject. Outside
    character classes only the metacharacters stay escaped and control characters become ``\\n``,
    ``\\xNN``; character classes are copied unchanged (mmreact writes them portably already).
    """
    out: list[str] = []
    i, in_class = 0, False
    while i < len(rx):
        c = rx[i]
        if c == "\\" and i + 1 < len(rx):
            nxt = rx[i + 1]
            if in_class or nxt in _META or nxt.isalnum():
                out.append(c + nxt)
            elif nxt in _CONTROL:
                out.append(_CONTROL[nxt])
            elif ord(nxt) < 0x20:
                out.append(f"\\x{ord(nxt):02x}")
            else:
                out.append(nxt)
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        if not in_class and ord(c) < 0x20:
            out.append(_CONTROL.get(c, f"\\x{ord(c):02x}"))
        else:
            out.append(c)
        i += 1
    return "".join(out)

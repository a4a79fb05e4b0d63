"""Transformers causal LMs (``hf:MODEL_ID_OR_DIR``) with the same constrained ReAct steps.

Decisions:

* Weights: a directory, a complete Hugging Face cache snapshot, or ``DIR/file.gguf``
  (transformers dequantises GGUF weights; needs ``gguf``); a hub id that is not here is fetched on
  first use when the machine is online, as the experts' weights are (see :mod:`mmreact.weights`;
  ``mmreact pull --llm hf:ID`` fetches it ahead).
* GPU in bf16 (fp16 where bf16 is missing) when CUDA is present, else CPU fp32; one model per
  process per (path, device), shared across threads; calls on one model run one at a time.
* The prompt comes from the tokenizer's chat template with ``sanitize_control_tokens=True``, so
  an OCR'd ``<|im_end|>`` stays text. A tokenizer without a chat template gets a plain
  ``role: text`` transcript.
* A key/value cache is kept per model across calls (:class:`~mmreact.llms._hf_decode.PrefixCache`):
  a request feeds only the tokens after the longest prefix it shares with the previous one (an
  agent's later step re-reads only its newest turn), then one token per forward pass.
* Constrained decoding (:mod:`mmreact.llms._hf_constrain`): llguidance compiles the language's
  GBNF, the same text llama.cpp gets, into an exact token mask; without llguidance, or for a
  tokenizer or a grammar it cannot take, a hand-written ``regex`` processor does it character by
  character. ``Completion.meta["constraint"]`` says which one ran (``"llguidance"`` or
  ``"regex"``), ``meta["cached_tokens"]`` how many prompt tokens came from the cache.
* Steps run through :func:`~mmreact.llms.grammar.run_step` like the GGUF backend (``Thought:``
  prefilled as input tokens, a settled ``Action:`` line appended as text). Greedy by default;
  with a temperature, llama.cpp's default sampling chain (top-k 40, top-p 0.95, min-p 0.05).
  Speed against llama.cpp on the same weights: ``tools/bench_llm.py``.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError, one_line
from ._hf_constrain import Constraints
from ._hf_decode import PrefixCache, decode
from .base import LLM, Completion, LLMRequest, chat_messages
from .formats import TextFormat
from .grammar import (
    FULL,
    Generated,
    LocalSteps,
    StepGrammar,
    StepOptions,
    run_step,
    step_grammar,
)

_INSTALL = "pip install 'mmreact[hf]'"
_instances: dict[str, HFLLM] = {}
_instances_lock = threading.Lock()


# -- loading -------------------------------------------------------------------------------
@dataclass(eq=False)
class _Loaded:
    model: Any
    tokenizer: Any
    device: str
    eos_ids: set[int]
    lock: threading.Lock = field(default_factory=threading.Lock)
    cache: PrefixCache | None = None  # the prefix cache (see hf_decode), made on first use
    constraints: dict[str, Constraints] = field(default_factory=dict)  # per engine choice

    def prefix_cache(self) -> PrefixCache:
        if self.cache is None:
            self.cache = PrefixCache(self.model)
        return self.cache

    def constrainer(self, engine: str) -> Constraints:
        if engine not in self.constraints:
            vocab = self.model.config.get_text_config().vocab_size
            self.constraints[engine] = Constraints(self.tokenizer, vocab, self.eos_ids, engine)
        return self.constraints[engine]


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return ids


def _locate(spec: str) -> tuple[str, str | None]:
    """(complete local directory, GGUF file name or None). A hub id missing here is fetched when it
    may be (see :mod:`mmreact.weights`); otherwise this raises in one sentence."""
    from ..weights.hub import LLM_NEEDS, HubWeights, missing_parts

    p = Path(spec).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise ConfigError(f"No GGUF model file at {p}.")
        return str(p.parent.resolve()), p.name
    weights = HubWeights(spec, needs=LLM_NEEDS, what="language model",
                         alternative=", or give hf:DIR with a saved copy",
                         pull=f"mmreact pull --llm hf:{spec}")
    local = weights.resolved()
    if local is not None:
        return local, None
    if p.is_absolute() or spec.startswith((".", "~")) or p.exists():
        what = ("does not exist" if not p.exists() else "has no config.json" if not (p / "config.json").is_file()
                else f"is incomplete ({missing_parts(p, LLM_NEEDS)})")
        raise ConfigError(f"The model directory {p} {what}; give a saved transformers model directory.")
    return weights.ensure(), None


def _load(where: str, gguf_file: str | None, device: str) -> _Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..loading import downloads_allowed, select_dtype

    local_only = not downloads_allowed()
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only, **extra)
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=local_only,
                                                     dtype=select_dtype(device), **extra)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"transformers could not load the language model at {where} ({one_line(exc)}).") from None
    model.to(device).eval()  # type: ignore[arg-type]  # transformers' stubs type .to() oddly
    return _Loaded(model, tokenizer, device, _eos_ids(model, tokenizer))


class HFLLM(LocalSteps, LLM):
    """A transformers causal LM with grammar-constrained ReAct steps.

    Args:
        model: a local model directory, ``DIR/file.gguf``, or a model id in the Hugging Face cache.
        device: ``"cuda"``, ``"cpu"``...; default: ``MMREACT_DEVICE``, else CUDA when present.
        constrained: enforce the step language while decoding (see :mod:`mmreact.llms._hf_constrain`).
        temperature: 0 is greedy.
        options: knobs of the step language.
        engine: the constraint engine: ``"auto"`` (llguidance where it can, else the regex
            fallback), ``"llguidance"`` or ``"regex"``.
        kv_cache: keep a key/value cache within and across calls; ``False`` recomputes the whole
            sequence for every token (very slow: a reference for tests).
    """

    def __init__(self, model: str, *, device: str | None = None, constrained: bool = True,
                 temperature: float = 0.0, options: StepOptions | None = None, name: str | None = None,
                 engine: str = "auto", kv_cache: bool = True) -> None:
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            raise ConfigError(f"hf: models need transformers and torch, which are not installed: run `{_INSTALL}`.")
        if not model or not model.strip():
            raise ConfigError("The hf: spec needs a model directory or id after 'hf:'.")
        if engine not in ("auto", "llguidance", "regex"):
            raise ConfigError(f"engine must be 'auto', 'llguidance' or 'regex', not {engine!r}.")
        self.where, self.gguf_file = _locate(model.strip())
        self.device_preference = device
        self.constrained = constrained
        self.temperature = temperature
        self.options = options or FULL
        self.engine = engine
        self.kv_cache = kv_cache
        self.name = name or f"hf:{Path(model).name or model}"

    @classmethod
    def from_spec(cls, model: str) -> HFLLM:
        """``hf:MODEL``: one shared instance per spec in a process."""
        with _instances_lock:
            llm = _instances.get(model)
            if llm is None:
                llm = _instances[model] = cls(model)
            return llm

    def _loaded(self) -> _Loaded:
        from ..loading import select_device, shared

        device = select_device(self.device_preference)
        return shared(("hf-llm", self.where, self.gguf_file, device), lambda: _load(self.where, self.gguf_file, device))

    def load(self) -> None:
        """Load the model and what the constraint engine needs (llguidance's tokenizer index)."""
        loaded = self._loaded()
        if self.constrained:
            with loaded.lock:
                loaded.constrainer(self.engine).prepare()

    def clear_cache(self) -> None:
        """Forget the cached prefix (its keys and values are freed; the next call reads its whole prompt)."""
        loaded = self._loaded()
        with loaded.lock:
            if loaded.cache is not None:
                loaded.cache.clear()

    @property
    def model(self) -> Any:
        return self._loaded().model

    @property
    def tokenizer(self) -> Any:
        return self._loaded().tokenizer

    # -- one step --------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> Completion:
        forced = self.forced_step(request)
        if forced is not None:
            return forced
        loaded = self._loaded()
        queued = time.perf_counter()
        with loaded.lock:
            waited = time.perf_counter() - queued
            stats: dict[str, Any] = {}
            try:
                prompt = self._prompt(loaded, request)

                def generate(g: StepGrammar | None, stop_when: Any, stream: bool) -> Generated:
                    return self._generate(loaded, prompt, request, g, stop_when, stream, stats)

                if request.kind != "react" or not self.constrained:
                    fmt = request.text_format if request.kind == "text" else None
                    out, meta = generate(fmt, None, True), {}  # type: ignore[arg-type]
                else:
                    out, meta = run_step(step_grammar(request, self.options), generate, on_text=request.on_text)
            except LLMError:
                raise
            except (RuntimeError, ValueError, IndexError) as exc:
                raise LLMError(f"{self.name} could not answer: {one_line(exc)}") from None
        return Completion(out.text, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                          meta={**meta, **stats}, wait_seconds=waited)

    def _prompt(self, loaded: _Loaded, request: LLMRequest) -> list[int]:
        tok = loaded.tokenizer
        messages = chat_messages(request.messages)
        if getattr(tok, "chat_template", None):
            enc = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                          sanitize_control_tokens=True)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant: "
            enc = tok(text)
        ids = enc["input_ids"]
        return [int(i) for i in (ids[0] if ids and isinstance(ids[0], list) else ids)]

    def _context(self, loaded: _Loaded) -> int | None:
        config = loaded.model.config.get_text_config()
        return next((int(v) for v in (getattr(config, n, None) for n in ("max_position_embeddings", "n_positions"))
                     if isinstance(v, int)), None)

    def _generate(self, loaded: _Loaded, prompt: list[int], request: LLMRequest,
                  language: StepGrammar | TextFormat | None, stop_when: Any, stream: bool,
                  stats: dict[str, Any]) -> Generated:
        tok = loaded.tokenizer
        ids = list(prompt)
        if language is not None and language.prefill:
            ids += tok(language.prefill, add_special_tokens=False)["input_ids"]
        max_new = request.max_tokens
        if isinstance(language, StepGrammar) and language.max_chars is not None:
            max_new = max(max_new, language.max_chars + 8)
        context = self._context(loaded)
        if context is not None and len(ids) >= context:
            raise LLMError(f"The conversation ({len(ids)} tokens) no longer fits {self.name}'s {context}-token "
                           "context; start a new chat.")
        if context is not None:
            max_new = min(max_new, context - len(ids))
        constraint = None
        if language is not None:
            constraint = loaded.constrainer(self.engine).make(language, sample=self.temperature > 0)
            stats["constraint"] = constraint.engine
            text = constraint.text
        else:
            eos = loaded.eos_ids

            def text(out: list[int]) -> str:
                return str(tok.decode([i for i in out if i not in eos], skip_special_tokens=True))

        cache = loaded.prefix_cache() if self.kv_cache else PrefixCache(loaded.model, enabled=False)
        stops = tuple(request.stop) if language is None or request.kind == "text" else ()
        out = decode(cache, ids, max_new_tokens=max_new, eos_ids=loaded.eos_ids, constraint=constraint, text=text,
                     temperature=self.temperature, stop_when=stop_when, stops=stops,
                     on_text=request.on_text if stream else None)
        stats["cached_tokens"] = out.cached
        return Generated(out.text, len(prompt), len(out.ids))

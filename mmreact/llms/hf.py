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
* Constrained decoding uses :class:`StepLogitsProcessor`, which enforces the step language of
  :mod:`mmreact.llms.grammar` character by character with ``regex`` partial matching. It walks
  candidate tokens from the highest score down and keeps the first ``keep`` tokens whose text
  keeps the reply a prefix of the language (1 when greedy, so greedy decoding is exact; 40 when
  sampling, so sampling is top-40 within the language). End-of-text is allowed only when the
  reply is complete. Limits: it works with any tokenizer whose tokens decode to text on their own
  (byte-level BPE, SentencePiece, WordPiece); tokens that decode to a partial UTF-8 character and
  special tokens are never chosen, so non-ASCII text appears only where whole-character tokens
  exist; batch size 1.
* Steps run through :func:`~mmreact.llms.grammar.run_step` like the GGUF backend (decision pass,
  ``Thought:`` prefilled as input tokens, a settled ``Action:`` line appended as text). Each
  pass runs the whole prompt again (no key/value cache is kept between calls): cheap on a GPU,
  the main cost on a CPU (see ``tools/bench_llm.py``).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError, one_line
from .base import LLM, Completion, LLMRequest, chat_messages
from .formats import TextFormat
from .grammar import FULL, Generated, StepGrammar, StepOptions, run_step, step_grammar

_INSTALL = "pip install transformers torch"
_instances: dict[str, HFLLM] = {}
_instances_lock = threading.Lock()


# -- token texts and the constraint --------------------------------------------------------
class TokenTexts:
    """The surface text of every token id of a tokenizer (computed once per tokenizer)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        size = max(vocab_size, len(tokenizer))
        anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        anchor_text = tokenizer.decode(anchor)
        # Decoding after an anchor token keeps SentencePiece's leading spaces.
        decoded = tokenizer.batch_decode([anchor + [i] for i in range(len(tokenizer))],
                                         skip_special_tokens=False, clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids)
        special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
        texts = [""] * size
        for i, full in enumerate(decoded):
            if i in special or not full.startswith(anchor_text):
                continue
            piece = full[len(anchor_text):]
            if "\ufffd" not in piece:
                texts[i] = piece
        self.texts = texts

    def join(self, ids: list[int]) -> str:
        return "".join(self.texts[i] if i < len(self.texts) else "" for i in ids)


class StepLogitsProcessor:
    """Masks every token that would take the reply out of the step language (batch size 1)."""

    def __init__(self, grammar: StepGrammar, texts: TokenTexts, prompt_len: int, eos_ids: set[int],
                 keep: int = 1) -> None:
        self.grammar = grammar
        self.texts = texts
        self.prompt_len = prompt_len
        self.eos_ids = eos_ids
        self.keep = keep

    def allowed(self, text: str, order: list[int]) -> list[int]:
        """The first ``keep`` ids in ``order`` that keep ``text`` inside the language."""
        g = self.grammar
        out: list[int] = []
        complete = g.accepts(text)
        first_ok: dict[str, bool] = {}
        texts = self.texts.texts
        for i in order:
            if i in self.eos_ids:
                if complete:
                    out.append(i)
            else:
                piece = texts[i] if i < len(texts) else ""
                if not piece:
                    continue
                ok = first_ok.get(piece[0])
                if ok is None:
                    ok = first_ok[piece[0]] = g.accepts_prefix(text + piece[0])
                if ok and (len(piece) == 1 or g.accepts_prefix(text + piece)):
                    out.append(i)
            if len(out) >= self.keep:
                break
        return out

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for row in range(scores.shape[0]):
            text = self.texts.join(input_ids[row, self.prompt_len:].tolist())
            k = min(64, scores.shape[1])
            top = torch.topk(scores[row], k).indices.tolist()
            ids = self.allowed(text, top)
            if len(ids) < self.keep:
                full = torch.argsort(scores[row], descending=True).tolist()
                ids = self.allowed(text, full)
            if not ids:  # dead end (cannot happen with a vocabulary that has single characters)
                ids = sorted(self.eos_ids)
            mask = torch.full_like(scores[row], float("-inf"))
            mask[ids] = 0
            scores[row] = scores[row] + mask
        return scores


class _Streamer:
    """Calls ``on_text`` with each new piece of text (skips the prompt); a transformers streamer."""

    def __init__(self, join: Any, on_text: Any) -> None:
        self.join = join
        self.on_text = on_text
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.join(self.ids)
        if text.endswith("\ufffd"):
            return
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.on_text(text[len(self.sent):])
            self.sent = text

    def end(self) -> None:
        pass


# -- loading -------------------------------------------------------------------------------
@dataclass(eq=False)
class _Loaded:
    model: Any
    tokenizer: Any
    texts: TokenTexts | None
    device: str
    lock: threading.Lock


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

    from ..experts.base import downloads_allowed, select_dtype

    local_only = not downloads_allowed()
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only, **extra)
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=local_only,
                                                     dtype=select_dtype(device), **extra)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"transformers could not load the language model at {where} ({one_line(exc)}).") from None
    model.to(device).eval()  # type: ignore[arg-type]  # transformers' stubs type .to() oddly
    return _Loaded(model, tokenizer, None, device, threading.Lock())


class HFLLM(LLM):
    """A transformers causal LM with grammar-constrained ReAct steps.

    Args:
        model: a local model directory, ``DIR/file.gguf``, or a model id in the Hugging Face cache.
        device: ``"cuda"``, ``"cpu"``...; default: ``MMREACT_DEVICE``, else CUDA when present.
        constrained: enforce the step language while decoding (see :class:`StepLogitsProcessor`).
        temperature: 0 is greedy.
        options: knobs of the step language.
    """

    def __init__(self, model: str, *, device: str | None = None, constrained: bool = True,
                 temperature: float = 0.0, options: StepOptions | None = None, name: str | None = None) -> None:
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            raise ConfigError(f"hf: models need transformers and torch, which are not installed: run `{_INSTALL}`.")
        if not model or not model.strip():
            raise ConfigError("The hf: spec needs a model directory or id after 'hf:'.")
        self.where, self.gguf_file = _locate(model.strip())
        self.device_preference = device
        self.constrained = constrained
        self.temperature = temperature
        self.options = options or FULL
        self.name = name or f"hf:{Path(model).name or model}"

    @classmethod
    def from_spec(cls, model: str) -> HFLLM:
        """``hf:MODEL``: one shared instance per spec in a process."""
        with _instances_lock:
            llm = _instances.get(model)
            if llm is None:
                llm = _instances[model] = cls(model)
            return llm

    runs_locally = True

    @property
    def writes_thoughts(self) -> bool:
        return self.options.thought or not self.constrained

    @property
    def first_step_acts(self) -> bool:
        return self.constrained and self.options.force_action

    def _loaded(self) -> _Loaded:
        from ..experts.base import select_device, shared

        device = select_device(self.device_preference)
        return shared(("hf-llm", self.where, self.gguf_file, device), lambda: _load(self.where, self.gguf_file, device))

    def load(self) -> None:
        self._loaded()

    @property
    def model(self) -> Any:
        return self._loaded().model

    @property
    def tokenizer(self) -> Any:
        return self._loaded().tokenizer

    # -- one step --------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> Completion:
        loaded = self._loaded()
        queued = time.perf_counter()
        with loaded.lock:
            waited = time.perf_counter() - queued
            try:
                inputs = self._prompt(loaded, request)

                def generate(g: StepGrammar | None, stop_when: Any, stream: bool) -> Generated:
                    return self._generate(loaded, inputs, request, g, stop_when, stream)

                fmt = request.text_format if request.kind == "text" else None
                if (fmt is not None or (request.kind == "react" and self.constrained)) and loaded.texts is None:
                    loaded.texts = TokenTexts(loaded.tokenizer, loaded.model.config.get_text_config().vocab_size)
                if request.kind != "react" or not self.constrained:
                    out = generate(fmt, None, True)
                    return Completion(out.text, prompt_tokens=out.prompt_tokens,
                                      completion_tokens=out.completion_tokens, wait_seconds=waited)
                out, meta = run_step(step_grammar(request, self.options), generate, on_text=request.on_text)
            except (RuntimeError, ValueError, IndexError) as exc:
                raise LLMError(f"{self.name} could not answer: {one_line(exc)}") from None
        return Completion(out.text, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                          meta=meta, wait_seconds=waited)

    def _prompt(self, loaded: _Loaded, request: LLMRequest) -> dict[str, Any]:
        tok = loaded.tokenizer
        messages = chat_messages(request.messages)
        if getattr(tok, "chat_template", None):
            enc = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                          return_tensors="pt", sanitize_control_tokens=True)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant: "
            enc = tok(text, return_tensors="pt")
        return {k: v.to(loaded.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _eos_ids(self, loaded: _Loaded) -> set[int]:
        ids: set[int] = set()
        for source in (loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return ids

    def _generate(self, loaded: _Loaded, inputs: dict[str, Any], request: LLMRequest,
                  grammar: StepGrammar | TextFormat | None, stop_when: Any, stream: bool) -> Generated:
        import torch
        from transformers import (
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
        )

        tok = loaded.tokenizer
        n_prompt = int(inputs["input_ids"].shape[1])
        if grammar is not None and grammar.prefill:
            extra = tok(grammar.prefill, add_special_tokens=False, return_tensors="pt")["input_ids"].to(loaded.device)
            inputs = {"input_ids": torch.cat([inputs["input_ids"], extra], dim=1),
                      "attention_mask": torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)}
        start = int(inputs["input_ids"].shape[1])
        eos = self._eos_ids(loaded)
        sample = self.temperature > 0
        pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos, default=0)
        kwargs: dict[str, Any] = dict(max_new_tokens=request.max_tokens, do_sample=sample, top_k=None, top_p=None,
                                      temperature=self.temperature if sample else None,
                                      eos_token_id=sorted(eos) or None, pad_token_id=pad)
        texts = loaded.texts
        if grammar is not None and texts is not None:
            join = texts.join  # exactly the text the constraint checked
            kwargs["logits_processor"] = LogitsProcessorList(
                [StepLogitsProcessor(grammar, texts, start, eos, keep=40 if sample else 1)]
            )
            if isinstance(grammar, StepGrammar) and grammar.max_chars is not None:
                kwargs["max_new_tokens"] = max(request.max_tokens, grammar.max_chars + 8)
        else:
            def join(ids: list[int]) -> str:
                return str(tok.decode([i for i in ids if i not in eos], skip_special_tokens=True))
        stops = list(request.stop) if grammar is None or request.kind == "text" else []
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=tok)
        if stop_when is not None:
            class _StopWhen(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                    done = bool(stop_when(join(input_ids[0, start:].tolist())))
                    return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopWhen()])
        streamer = _Streamer(join, request.on_text) if stream and request.on_text is not None else None
        output = loaded.model.generate(**inputs, streamer=streamer, **kwargs)
        new = [i for i in output[0, start:].tolist() if i not in eos]
        text = join(new)
        if stops:
            cut = min((text.find(s) for s in stops if s and s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return Generated(text, n_prompt, len(new))

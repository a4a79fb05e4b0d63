"""End-to-end multimodal models through transformers: vision encoder -> bridge -> LLM, one call.

Three bridge designs, so that users can compare them with each other and with the tool-using agent:

=======================  ================================================  ========================
bridge                   families (``config.json`` ``model_type``)         images per question
=======================  ================================================  ========================
projection               ``llava``, ``llava_next``, ``llava_onevision``     any number
q-former                 ``blip-2``, ``instructblip``                       exactly one
gated cross-attention    ``idefics`` (the open Flamingo)                    any number
=======================  ================================================  ========================

Any other model type loads through ``AutoModelForImageTextToText`` (SmolVLM, Idefics2/3, Qwen2-VL,
PaliGemma, mllama ...); its bridge is looked up in :data:`BRIDGES` and is ``"other"`` when unknown.

Decisions:

* The class is chosen from the local ``config.json`` (``model_type``, else ``architectures``), read
  with ``json`` so that nothing heavy is imported until the first question.
* Weights: a path, or a complete Hugging Face cache snapshot; a hub id that is not here is
  downloaded by transformers on first use when :mod:`mmreact.weights` allows it (online, not opted
  out); otherwise missing weights raise :class:`WeightsMissingError` in one sentence.
* Prompts: BLIP-2 always uses its trained ``Question: ... Answer:`` format, InstructBLIP the bare
  question, IDEFICS its processor's list-of-prompts format (``"User:", images..., question,
  "<end_of_utterance>", "\\nAssistant:"``, with ``<image>`` tokens banned from the output, as its
  model card does). Every other family uses the processor's chat template (one ``{"type": "image"}``
  part per image, then the question) and, without one, LLaVA-1.5's ``USER: <image>\\n... ASSISTANT:``.
* Solved examples (``examples=``, :mod:`mmreact.fewshot`) go before the question as completed turns,
  their images interleaved in order: a user turn (images, question) and an assistant turn (the
  answer) each. IDEFICS: ``"User:", images..., question, "<end_of_utterance>", "\\nAssistant: ANSWER
  <end_of_utterance>", "\\nUser:", ...`` (its model card's few-shot format); chat templates: user and
  assistant messages; LLaVA without a template: ``USER: <image>\\nQ ASSISTANT: A</s>USER: ...``.
  BLIP-2 and InstructBLIP take one image per question and refuse examples in one sentence, and so
  does a model with neither a chat template nor a known family.
* Greedy decoding (``do_sample=False``) so runs repeat; ``max_new_tokens`` caps the answer. The
  checkpoint's saved generation config is passed on explicitly, because BLIP-2 and InstructBLIP
  hand generation to their inner LLM, which would otherwise use a config built from its bare
  text config and ignore the checkpoint's settings (suppressed tokens, stop tokens ...).
* GPU and half precision (bf16 where supported) when a GPU is present, fp32 on CPU. The model and
  processor load once per process (:func:`mmreact.loading.shared`) and calls on one model are
  serialised with a lock (batching, not threads, is the way to more throughput).
* Token counts: ``prompt_tokens`` is the LLM input length including image placeholder tokens (what
  the context really holds), ``completion_tokens`` the generated tokens without padding.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, WeightsMissingError, one_line
from ..images import Image
from ..loading import (
    downloads_allowed,
    missing_hf_message,
    require_hf_weights,
    select_device,
    select_dtype,
    shared,
)
from .base import Bridge, EndToEndSystem, Generation

if TYPE_CHECKING:
    from ..fewshot import Demonstrations

__all__ = ["BRIDGES", "FAMILIES", "Family", "HFMultimodal"]

PromptStyle = Literal["chat", "blip2", "instructblip", "idefics"]
WHAT = "end-to-end multimodal model"


@dataclass(frozen=True, slots=True)
class Family:
    """How to load and prompt one model family."""

    label: str
    class_name: str  # a transformers class
    bridge: Bridge
    prompt: PromptStyle
    max_images: int | None = None  # None: any number


FAMILIES: dict[str, Family] = {
    "llava": Family("LLaVA", "LlavaForConditionalGeneration", "projection", "chat"),
    "llava_next": Family("LLaVA-NeXT", "LlavaNextForConditionalGeneration", "projection", "chat"),
    "llava_onevision": Family("LLaVA-OneVision", "LlavaOnevisionForConditionalGeneration", "projection", "chat"),
    "blip-2": Family("BLIP-2", "Blip2ForConditionalGeneration", "q-former", "blip2", max_images=1),
    "instructblip": Family("InstructBLIP", "InstructBlipForConditionalGeneration", "q-former", "instructblip",
                           max_images=1),
    "idefics": Family("IDEFICS", "IdeficsForVisionText2Text", "gated cross-attention", "idefics"),
}
GENERIC_CLASS = "AutoModelForImageTextToText"

#: Bridge of model types that load through the generic path (published architectures).
BRIDGES: dict[str, Bridge] = {
    **{t: "projection" for t in ("idefics2", "idefics3", "smolvlm", "llava_next_video", "paligemma", "gemma3",
                                 "qwen2_vl", "qwen2_5_vl", "mistral3", "aya_vision", "internvl", "pixtral", "vipllava")},
    "instructblipvideo": "q-former",
    "mllama": "gated cross-attention",
}


class HFMultimodal(EndToEndSystem):
    """An end-to-end multimodal model loaded with transformers (spec ``mllm:MODEL_ID_OR_PATH``).

    Args:
        model_id_or_path: a local directory with ``config.json``, weights and processor files, or a
            Hugging Face id whose snapshot is in the local cache.
        device: ``"cuda"``, ``"cpu"``...; ``None`` means ``MMREACT_DEVICE``, else a GPU when present.
        dtype: ``"bfloat16"``, ``"float16"``, ``"float32"`` or a torch dtype; ``None`` means half
            precision on GPU and fp32 on CPU.
        max_new_tokens: the most tokens one answer may have.
        examples: solved examples shown before every question (:mod:`mmreact.fewshot`).
    """

    #: generate() calls on one model are serialised, so more threads only wait.
    max_concurrency = 1

    def __init__(self, model_id_or_path: str, device: str | None = None, dtype: Any = None,
                 max_new_tokens: int = 128, examples: Any = None) -> None:
        model_id = str(model_id_or_path or "").strip()
        if not model_id:
            raise ConfigError("The mllm backend needs a model id or path, e.g. mllm:llava-hf/llava-1.5-7b-hf.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        self.model_id = model_id
        local = _local_dir(model_id)
        self.user_dir = local is not None  # a folder the user named, not a hub id
        self.location = local or require_hf_weights(model_id, WHAT, "mllm:PATH")
        self.config = _read_config(self.location, model_id)
        self.model_type = str(self.config.get("model_type") or "")
        self.family = _family(self.model_type, self.config.get("architectures") or [])
        self.device_preference = device
        self.dtype_preference = _dtype_name(dtype) if isinstance(dtype, str) else dtype
        self.max_new_tokens = max_new_tokens
        shown = Path(self.location).resolve().name if self.user_dir else model_id
        self.name = f"mllm:{shown} ({self.bridge})"
        self.use_examples(examples)

    @property
    def bridge(self) -> Bridge:
        if self.family is not None:
            return self.family.bridge
        return BRIDGES.get(self.model_type, "other")

    @property
    def device(self) -> str:
        return select_device(self.device_preference)

    # -- loading ----------------------------------------------------------------------------
    def _key(self) -> tuple[str, ...]:
        return ("mllm", self.location, self.device, str(self.dtype_preference))

    def load(self) -> None:
        """Load the model and processor (once per process, shared by every instance)."""
        shared(self._key(), self._load)

    def _parts(self) -> tuple[Any, Any, threading.Lock]:
        return shared(self._key(), self._load)

    def _load(self) -> tuple[Any, Any, threading.Lock]:
        try:
            import torch  # noqa: F401
            import transformers
        except ImportError:
            raise ConfigError(
                "End-to-end multimodal models need torch and transformers: pip install 'mmreact[vision]'."
            ) from None
        device = self.device
        dtype = _torch_dtype(self.dtype_preference, device)
        cls_name = self.family.class_name if self.family is not None else GENERIC_CLASS
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            raise ConfigError(
                f"This transformers ({transformers.__version__}) has no {cls_name} for '{self.model_id}'; "
                "upgrade transformers."
            )
        local_only = not downloads_allowed()
        try:
            model = cls.from_pretrained(self.location, dtype=dtype, local_files_only=local_only)
        except OSError as exc:
            if self.user_dir:
                message = (f"The model folder {self.model_id} has a config.json but its weights are missing or "
                           f"unreadable ({_why(exc)}).")
            else:
                message = f"{missing_hf_message(self.model_id, WHAT, 'mllm:PATH')[:-1]} ({_why(exc)})."
            raise WeightsMissingError(message) from None
        except ValueError as exc:
            if self.family is None:
                raise ConfigError(
                    f"'{self.model_id}' is a '{self.model_type or 'unknown'}' model, which transformers cannot "
                    f"load as an image-text-to-text model ({_why(exc)})."
                ) from None
            raise
        try:
            processor = transformers.AutoProcessor.from_pretrained(self.location, local_files_only=local_only)
        except (OSError, ValueError, TypeError) as exc:
            raise WeightsMissingError(
                f"The processor files (tokenizer, image processor) of '{self.model_id}' are missing or broken: "
                f"save the processor next to the weights ({_why(exc)})."
            ) from None
        model = model.to(device).eval()
        return model, processor, threading.Lock()

    # -- answering --------------------------------------------------------------------------
    def check_images(self, count: int) -> None:
        family = self.family
        if family is None or family.max_images is None:
            return
        if count != family.max_images:
            raise ConfigError(
                f"{family.label} ({family.bridge}) takes exactly {family.max_images} image per question, got "
                f"{count}; ask about each image separately."
            )

    def check_examples(self, examples: Demonstrations) -> None:
        family = self.family
        if family is not None and family.max_images is not None:
            raise ConfigError(
                f"{family.label} ({family.bridge}) takes exactly {family.max_images} image per question, so it "
                "cannot be shown solved examples; use a model that takes several images (LLaVA, IDEFICS, "
                "OpenAI vision)."
            )

    def generate(self, question: str, images: Sequence[Image]) -> Generation:
        import torch

        model, processor, lock = self._parts()
        inputs, extra = self._inputs(processor, question, [img.pil for img in images])
        dtype = next(model.parameters()).dtype
        inputs = {k: (v.to(model.device, dtype=dtype) if torch.is_floating_point(v) else v.to(model.device))
                  if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        tokenizer = getattr(processor, "tokenizer", processor)
        pad = tokenizer.pad_token_id
        eos = tokenizer.eos_token_id
        config = copy.deepcopy(model.generation_config)
        if config.pad_token_id is None and (pad is not None or eos is not None):
            extra.setdefault("pad_token_id", pad if pad is not None else eos)
        config.update(max_new_tokens=self.max_new_tokens, do_sample=False, **extra)
        with lock, torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        sequence = getattr(out, "sequences", out)[0]
        prompt_ids = inputs.get("input_ids")
        prompt = prompt_ids[0] if isinstance(prompt_ids, torch.Tensor) else sequence[:0]
        prompt_len = int(prompt.shape[0])
        new = sequence
        if prompt_len and sequence.shape[0] >= prompt_len and torch.equal(sequence[:prompt_len], prompt):
            new = sequence[prompt_len:]  # decoder-only models return the prompt too
        elif getattr(model.config, "is_encoder_decoder", False) and new.shape[0]:
            new = new[1:]  # the decoder start token
        if pad is not None and pad != eos:
            new = new[new != pad]
        text = tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text=text, prompt_tokens=prompt_len or None, completion_tokens=int(new.shape[0]))

    def _turns(self) -> list[tuple[str, list[Any], str]]:
        """The solved examples as (question, PIL images, answer), in order."""
        shown = self.examples.shown if self.examples is not None else ()
        return [(s.example.question, [img.pil for img in s.images], s.example.answer) for s in shown]

    def _inputs(self, processor: Any, question: str, pils: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The processor's tensors for one question (after the solved examples), and extra
        ``generate`` arguments."""
        style = self.family.prompt if self.family is not None else "chat"
        turns = self._turns()
        if style == "blip2":
            return dict(processor(images=pils[0], text=f"Question: {question} Answer:", return_tensors="pt")), {}
        if style == "instructblip":
            return dict(processor(images=pils[0], text=question, return_tensors="pt")), {}
        if style == "idefics":
            prompts: list[Any] = []
            for q, ims, a in turns:
                prompts += ["\nUser:" if prompts else "User:", *ims, q, "<end_of_utterance>",
                            f"\nAssistant: {a}<end_of_utterance>"]
            prompts += ["\nUser:" if prompts else "User:", *pils, question, "<end_of_utterance>", "\nAssistant:"]
            inputs = processor(text=prompts, add_end_of_utterance_token=False, return_tensors="pt")
            tok = processor.tokenizer
            ids = {name: tok.convert_tokens_to_ids(name)
                   for name in ("<image>", "<fake_token_around_image>", "<end_of_utterance>")}
            ids = {k: v for k, v in ids.items() if isinstance(v, int) and v != tok.unk_token_id}
            extra: dict[str, Any] = {}
            banned = [[ids[k]] for k in ("<image>", "<fake_token_around_image>") if k in ids]
            if banned:
                extra["bad_words_ids"] = banned
            if "<end_of_utterance>" in ids and tok.eos_token_id is not None:
                extra["eos_token_id"] = [tok.eos_token_id, ids["<end_of_utterance>"]]
            return dict(inputs), extra
        prompt = self._chat_prompt(processor, question, len(pils), turns)
        every = [im for _, ims, _ in turns for im in ims] + pils
        return dict(processor(images=every or None, text=prompt, return_tensors="pt")), {}

    def _chat_prompt(self, processor: Any, question: str, n_images: int,
                     turns: Sequence[tuple[str, list[Any], str]] = ()) -> str:
        if getattr(processor, "chat_template", None):
            messages: list[dict[str, Any]] = []
            for q, ims, a in turns:
                messages.append({"role": "user", "content": [*({"type": "image"} for _ in ims),
                                                             {"type": "text", "text": q}]})
                messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
            content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
            content.append({"type": "text", "text": question})
            messages.append({"role": "user", "content": content})
            return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        image_token = getattr(processor, "image_token", None)
        if image_token is None and (n_images or any(ims for _, ims, _ in turns)):
            raise ConfigError(
                f"The processor of '{self.model_id}' has no chat template and no image token, so there is no "
                "known prompt format; add a chat_template to its processor files."
            )
        token = str(getattr(image_token, "content", image_token or ""))
        if self.family is not None:  # the LLaVA families: LLaVA-1.5's format
            end = str(getattr(getattr(processor, "tokenizer", None), "eos_token", None) or "</s>")
            shown = "".join("USER: " + f"{token}\n" * len(ims) + f"{q} ASSISTANT: {a}{end}" for q, ims, a in turns)
            return shown + "USER: " + f"{token}\n" * n_images + f"{question} ASSISTANT:"
        if turns:
            raise ConfigError(
                f"The processor of '{self.model_id}' has no chat template, so there is no known way to show it "
                "solved examples; add a chat_template to its processor files."
            )
        return token * n_images + question


def _local_dir(model_id: str) -> str | None:
    """The directory ``model_id`` names when it is clearly a path (not a hub id); checked, one sentence."""
    path = Path(model_id).expanduser()
    if not (path.is_absolute() or model_id.startswith((".", "~")) or path.is_dir()):
        return None
    if not path.is_dir():
        raise WeightsMissingError(f"There is no model directory at {model_id}; give the folder that holds "
                                  "config.json, the weights and the processor files.")
    if not (path / "config.json").is_file():
        raise WeightsMissingError(f"{model_id} has no config.json; give the folder a model was saved to "
                                  "with save_pretrained (weights and processor files included).")
    return str(path)


def _read_config(location: str, model_id: str) -> dict[str, Any]:
    """``config.json`` as a dict, without importing transformers."""
    path = Path(location) / "config.json"
    if not path.is_file():  # downloads are allowed and the id is not cached: fetch just the config
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model_id, "config.json"))
        except Exception as exc:  # noqa: BLE001 - any hub failure is the same sentence
            raise WeightsMissingError(
                f"Cannot fetch the config of '{model_id}' from the Hugging Face hub ({_why(exc)})."
            ) from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable JSON model config ({_why(exc)}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a model config (expected a JSON object).")
    return data


def _family(model_type: str, architectures: Sequence[str]) -> Family | None:
    family = FAMILIES.get(model_type)
    if family is not None:
        return family
    for fam in FAMILIES.values():
        if fam.class_name in architectures:
            return fam
    return None


_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16",
           "float32": "float32", "fp32": "float32", "float": "float32"}


def _dtype_name(name: str) -> str:
    value = _DTYPES.get(name.strip().lower().removeprefix("torch."))
    if value is None:
        raise ConfigError(f"Unknown dtype {name!r}; use bfloat16, float16 or float32.")
    return value


def _torch_dtype(preference: Any, device: str) -> Any:
    import torch

    if preference is None:
        return select_dtype(device)
    if isinstance(preference, str):
        return getattr(torch, preference)
    if isinstance(preference, torch.dtype) and preference.is_floating_point:
        return preference
    raise ConfigError(f"Unknown dtype {preference!r}; use bfloat16, float16 or float32.")


def _why(exc: BaseException) -> str:
    """An exception as a short clause for inside parentheses."""
    return one_line(exc, 160).rstrip(".")

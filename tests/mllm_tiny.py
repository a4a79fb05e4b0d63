"""Tiny, randomly initialised end-to-end multimodal models of the REAL architectures, built offline.

One builder per bridge design: LLaVA and LLaVA-NeXT (projection), BLIP-2 and InstructBLIP (Q-Former), IDEFICS
(gated cross-attention, the open Flamingo), plus VipLLaVA for the generic
``AutoModelForImageTextToText`` path. Each saves the model and its REAL processor (the family's own
image processor and processor class) with ``save_pretrained``, so ``mllm:<dir>`` loads them through
the code path users hit with real checkpoints.

Decisions:

* The tokenizer is a byte-level BPE with no merges (every byte is a token, so any text tokenises)
  plus a few whole-word tokens (`` cat``, `` dog`` ...), wrapped in ``PreTrainedTokenizerFast``;
  nothing is downloaded. Special tokens (``<image>`` ...) are added as the real checkpoints add them.
* ``words_only`` puts every token id except the whole words into the saved generation config's
  ``suppress_tokens`` (the real ``SuppressTokensLogitsProcessor``), so the random model never stops
  early and always answers ``max_new_tokens`` words, never an empty string. Which words it picks is
  up to the random weights.
* Sizes: hidden 32, 1-2 layers, 32 px images in 16 px patches (4 image tokens): a few hundred kB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny_models import WORDS, byte_chars

__all__ = ["LLAVA_TEMPLATE", "build_blip2", "build_idefics", "build_instructblip", "build_llava", "build_llava_next",
           "build_vipllava", "spread_weights", "word_tokenizer", "words_only"]

#: LLaVA-1.5's conversation format as a processor chat template.
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
BASE_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


def word_tokenizer(specials: list[str] = BASE_SPECIALS, *, extra: dict[str, Any] | None = None,
                   add_bos: bool = True) -> tuple[Any, dict[str, int]]:
    """A byte-level ``PreTrainedTokenizerFast`` (``<s>`` prepended) and its vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in [*specials, *byte_chars(), *[f"Ġ{w}" for w in WORDS]]:
        vocab.setdefault(tok, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    if add_bos:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=512, **(extra or {}),
    )
    return tokenizer, vocab


def words_only(model: Any, vocab: dict[str, int]) -> None:
    """Let the random model generate only whole-word tokens (see the module docstring)."""
    words = {vocab[f"Ġ{w}"] for w in WORDS}
    model.generation_config.suppress_tokens = [i for i in range(len(vocab)) if i not in words]


def _llama(vocab_size: int, hidden: int, layers: int) -> dict[str, Any]:
    return dict(model_type="llama", vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=1, eos_token_id=2, pad_token_id=3)


def _clip_vision(hidden: int, layers: int, image_size: int, patch_size: int) -> dict[str, Any]:
    return dict(model_type="clip_vision_model", hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=layers, num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                projection_dim=hidden)


def _llava_processor(image_size: int, patch_size: int, chat_template: bool) -> tuple[Any, dict[str, int]]:
    from transformers import CLIPImageProcessor, LlavaProcessor

    tokenizer, vocab = word_tokenizer(extra={"extra_special_tokens": {"image_token": "<image>"}})
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE if chat_template else None,
    )
    return processor, vocab


def spread_weights(model: Any, std: float) -> None:
    """Redraw every matrix, embedding, learned query and gate from N(0, std).

    The default initialisations make a random model nearly blind: BLIP-2's learned queries start
    at zero, IDEFICS's cross-attention gates start closed (tanh(0) = 0, the Flamingo design), and
    std 0.02 leaves the next token decided by the last prompt token alone. Wider weights make the
    answer depend on the images and the whole prompt, so tests can tell right inputs from wrong.
    Norm weights and biases keep their values.
    """
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 or "alpha" in name or "query_tokens" in name or "embedding" in name:
                param.normal_(0.0, std)


def _save(model: Any, processor: Any, vocab: dict[str, int], path: str | Path, std: float | None = 0.3) -> Path:
    if std:
        spread_weights(model, std)
    words_only(model, vocab)
    out = Path(path)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_llava(path: str | Path, *, hidden: int = 32, layers: int = 1, image_size: int = 32,
                patch_size: int = 16, chat_template: bool = True, seed: int = 0) -> Path:
    """A random ``LlavaForConditionalGeneration`` (CLIP vision tower -> MLP projection -> Llama)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    processor, vocab = _llava_processor(image_size, patch_size, chat_template)
    config = LlavaConfig(
        vision_config=_clip_vision(hidden, layers, image_size, patch_size),
        text_config=_llama(len(vocab), hidden, layers),
        image_token_index=vocab["<image>"], image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    return _save(LlavaForConditionalGeneration(config).eval(), processor, vocab, path)


def build_llava_next(path: str | Path, *, hidden: int = 32, layers: int = 1, image_size: int = 32,
                     patch_size: int = 16, seed: int = 0) -> Path:
    """A random ``LlavaNextForConditionalGeneration``: LLaVA with "anyres" tiling (a base view plus
    tiles picked from ``image_grid_pinpoints``), each tile through the same projection."""
    import torch
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    torch.manual_seed(seed)
    tokenizer, vocab = word_tokenizer(extra={"extra_special_tokens": {"image_token": "<image>"}})
    pinpoints = [[image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size],
                 [2 * image_size, 2 * image_size]]
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE,
    )
    config = LlavaNextConfig(
        vision_config=_clip_vision(hidden, layers, image_size, patch_size),
        text_config=_llama(len(vocab), hidden, layers), image_token_index=vocab["<image>"],
        image_grid_pinpoints=pinpoints, image_seq_length=(image_size // patch_size) ** 2,
    )
    return _save(LlavaNextForConditionalGeneration(config).eval(), processor, vocab, path)


def build_vipllava(path: str | Path, *, hidden: int = 32, image_size: int = 32, patch_size: int = 16,
                   seed: int = 0) -> Path:
    """A random ``VipLlavaForConditionalGeneration``: a projection model outside the named families,
    so it loads through ``AutoModelForImageTextToText``."""
    import torch
    from transformers import VipLlavaConfig, VipLlavaForConditionalGeneration

    torch.manual_seed(seed)
    processor, vocab = _llava_processor(image_size, patch_size, chat_template=True)
    config = VipLlavaConfig(
        vision_config=_clip_vision(hidden, 2, image_size, patch_size),
        text_config=_llama(len(vocab), hidden, 1),
        image_token_index=vocab["<image>"], image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_layer=[-2, -1],
    )
    return _save(VipLlavaForConditionalGeneration(config).eval(), processor, vocab, path)


def _blip2_parts(hidden: int, layers: int, image_size: int, patch_size: int, num_query_tokens: int,
                 vocab_size: int) -> dict[str, Any]:
    return dict(
        vision_config=dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size),
        qformer_config=dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                            num_attention_heads=2, cross_attention_frequency=1, vocab_size=vocab_size,
                            max_position_embeddings=128),
        num_query_tokens=num_query_tokens,
    )


def build_blip2(path: str | Path, *, hidden: int = 32, layers: int = 1, image_size: int = 32, patch_size: int = 16,
                num_query_tokens: int = 4, seed: int = 0) -> Path:
    """A random ``Blip2ForConditionalGeneration`` (ViT -> Q-Former with learned queries -> OPT)."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    torch.manual_seed(seed)
    tokenizer, vocab = word_tokenizer()
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer, num_query_tokens=num_query_tokens)
    config = Blip2Config(
        **_blip2_parts(hidden, layers, image_size, patch_size, num_query_tokens, len(vocab)),
        text_config=dict(model_type="opt", vocab_size=len(vocab), hidden_size=hidden, ffn_dim=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=2, word_embed_proj_dim=hidden,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=3),
        image_token_index=vocab["<image>"],
    )
    return _save(Blip2ForConditionalGeneration(config).eval(), processor, vocab, path)


def build_instructblip(path: str | Path, *, hidden: int = 32, layers: int = 1, image_size: int = 32,
                       patch_size: int = 16, num_query_tokens: int = 4, seed: int = 0) -> Path:
    """A random ``InstructBlipForConditionalGeneration`` (the Q-Former also reads the instruction)."""
    import torch
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    torch.manual_seed(seed)
    tokenizer, vocab = word_tokenizer()
    qformer_tokenizer, _ = word_tokenizer(add_bos=False)
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer, qformer_tokenizer=qformer_tokenizer, num_query_tokens=num_query_tokens,
    )
    config = InstructBlipConfig(
        **_blip2_parts(hidden, layers, image_size, patch_size, num_query_tokens, len(vocab)),
        text_config=_llama(len(vocab), hidden, layers),
        image_token_index=vocab["<image>"],
    )
    return _save(InstructBlipForConditionalGeneration(config).eval(), processor, vocab, path)


def build_idefics(path: str | Path, *, hidden: int = 32, layers: int = 2, image_size: int = 32,
                  patch_size: int = 16, seed: int = 0) -> Path:
    """A random ``IdeficsForVisionText2Text``: a frozen-LM Flamingo whose text layers read the image
    features through gated cross-attention (``cross_layer_interval=1``: every layer)."""
    import torch
    from transformers import IdeficsConfig, IdeficsForVisionText2Text, IdeficsImageProcessor, IdeficsProcessor

    torch.manual_seed(seed)
    markers = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    tokenizer, vocab = word_tokenizer([*BASE_SPECIALS, *markers[::2]], extra={"additional_special_tokens": markers})
    processor = IdeficsProcessor(image_processor=IdeficsImageProcessor(image_size=image_size), tokenizer=tokenizer)
    config = IdeficsConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=2, cross_layer_interval=1, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=3, use_resampler=False,
        vision_config=dict(embed_dim=hidden, image_size=image_size, patch_size=patch_size, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=hidden * 2),
    )
    return _save(IdeficsForVisionText2Text(config).eval(), processor, vocab, path)

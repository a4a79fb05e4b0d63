"""Build tiny, randomly initialised models of the REAL expert architectures, offline.

Each builder creates a model of the real transformers class (BLIP, Florence-2, CLIP) with its real
processor, tokenizer made from a small vocabulary written here (nothing is downloaded), and
``save_pretrained``s both into ``path``, so the experts load them through exactly the code path
users hit with the real checkpoints (``model=<path>``).

Sizes are parameters: the defaults make models of a few hundred kB that run in milliseconds on a
CPU (for tests). The presets give the real checkpoints' sizes with random weights, for GPU
benchmarks: ``build_blip(p, **BLIP_LARGE)`` (446 M parameters), ``build_clip(p, **CLIP_B32)``
(151 M), ``build_florence2(p, **FLORENCE2_BASE)`` (231 M). A random model decodes random tokens,
so set ``min_new_tokens`` (or use ``build_blip(suppress_special=True)``) to time a fixed length.

Decisions:
- Tokenizers are the real tokenizer classes (``BertTokenizer`` for BLIP, the byte-level BPE
  ``BartTokenizer`` for Florence-2, ``CLIPTokenizer``) built from a vocabulary with no merges:
  every byte is a token, so any text tokenises (one token per character).
- ``build_blip(suppress_special=True)`` pushes the LM-head bias of special tokens to -1e4 so the
  random decoder never stops early or emits only special tokens: the caption is random words,
  never empty. Nothing else about the output is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "build_blip", "build_clip", "build_florence2", "byte_chars",
    "BLIP_BASE", "BLIP_LARGE", "CLIP_B32", "FLORENCE2_BASE",
]

WORDS = (
    "a an the of on in with and at near next to is are two three cat dog person man woman child "
    "sitting lying standing walking couch table street car tree sky grass water building red blue "
    "green white black small large photo picture view room kitchen bed window door road beach"
).split()


#: Keyword arguments that give the real checkpoints' sizes (random weights), for GPU benchmarks.
BLIP_BASE: dict[str, Any] = dict(hidden=768, layers=12, heads=12, image_size=384, patch_size=16, vocab_size=30524)
BLIP_LARGE: dict[str, Any] = dict(BLIP_BASE, vision_hidden=1024, vision_layers=24, vision_heads=16)
CLIP_B32: dict[str, Any] = dict(hidden=512, layers=12, heads=8, vision_hidden=768, vision_layers=12, vision_heads=12,
                                image_size=224, patch_size=32, projection_dim=512, vocab_size=49408)
FLORENCE2_BASE: dict[str, Any] = dict(d_model=768, layers=6, heads=12, image_size=768, embed_dims=(128, 256, 512, 1024),
                                      depths=(1, 1, 9, 1), vision_heads=(4, 8, 16, 32), window_size=12,
                                      vocab_size=51289)


def byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0-255 (GPT-2's table)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _pad_vocab(vocab: dict[str, int], size: int | None) -> dict[str, int]:
    if size is not None:
        i = 0
        while len(vocab) < size:
            vocab.setdefault(f"zz{i}", len(vocab))
            i += 1
    return vocab


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def build_blip(
    path: str | Path,
    *,
    hidden: int = 32,
    layers: int = 1,
    heads: int = 2,
    image_size: int = 32,
    patch_size: int = 16,
    vision_hidden: int | None = None,
    vision_layers: int | None = None,
    vision_heads: int | None = None,
    vocab_size: int | None = None,
    suppress_special: bool = True,
    seed: int = 0,
) -> Path:
    """A random ``BlipForConditionalGeneration`` + ``BlipProcessor`` saved in ``path``.

    ``hidden``/``layers``/``heads`` size the text decoder; the vision tower uses the same unless
    ``vision_*`` say otherwise (BLIP-large pairs a ViT-L with a base-size decoder).
    """
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    _seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,'-")
    vocab: dict[str, int] = {}
    for tok in [*specials, *letters, *[f"##{c}" for c in letters], *WORDS]:
        vocab.setdefault(tok, len(vocab))
    vocab = _pad_vocab(vocab, vocab_size)
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", model_max_length=512)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    v_hidden, v_layers, v_heads = vision_hidden or hidden, vision_layers or layers, vision_heads or heads
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=hidden, encoder_hidden_size=v_hidden, intermediate_size=hidden * 4,
            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=128,
            bos_token_id=vocab["[DEC]"], eos_token_id=vocab["[SEP]"], sep_token_id=vocab["[SEP]"],
            pad_token_id=vocab["[PAD]"], projection_dim=hidden,
        ),
        vision_config=dict(
            hidden_size=v_hidden, intermediate_size=v_hidden * 4, num_hidden_layers=v_layers,
            num_attention_heads=v_heads, image_size=image_size, patch_size=patch_size, projection_dim=hidden,
        ),
        projection_dim=hidden,
        image_text_hidden_size=hidden,
    )
    model = BlipForConditionalGeneration(config).eval()
    if suppress_special:
        bias = model.text_decoder.cls.predictions.bias
        with torch.no_grad():
            for tok in specials:
                bias[vocab[tok]] = -1e4
    out = Path(path)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_clip(
    path: str | Path,
    *,
    hidden: int = 32,
    layers: int = 1,
    heads: int = 2,
    image_size: int = 32,
    patch_size: int = 16,
    projection_dim: int = 16,
    vision_hidden: int | None = None,
    vision_layers: int | None = None,
    vision_heads: int | None = None,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """A random ``CLIPModel`` + ``CLIPProcessor`` saved in ``path`` (``hidden``... size the text
    tower; the vision tower uses the same unless ``vision_*`` say otherwise)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    _seed(seed)
    vocab: dict[str, int] = {}
    for ch in byte_chars():
        vocab.setdefault(ch, len(vocab))
    for ch in byte_chars():
        vocab.setdefault(ch + "</w>", len(vocab))
    for tok in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(tok, len(vocab))
    vocab = _pad_vocab(vocab, vocab_size)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
            num_attention_heads=heads, max_position_embeddings=77, projection_dim=projection_dim,
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=vision_hidden or hidden, intermediate_size=(vision_hidden or hidden) * 4,
            num_hidden_layers=vision_layers or layers, num_attention_heads=vision_heads or heads,
            image_size=image_size, patch_size=patch_size, projection_dim=projection_dim,
        ),
        projection_dim=projection_dim,
    )
    model = CLIPModel(config).eval()
    out = Path(path)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def florence2_post_processor_config() -> dict[str, Any]:
    """The task parsers Florence-2's processor needs (the same entries the real checkpoints ship)."""
    return {
        "ocr": {
            "pattern": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
            "area_threshold": 0.0,
        },
        "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
        "pure_text": {},
        "description_with_bboxes": {},
        "description_with_polygons": {},
        "polygons": {},
        "bboxes": {},
        "description_with_bboxes_or_polygons": {},
    }


def build_florence2(
    path: str | Path,
    *,
    d_model: int = 32,
    layers: int = 1,
    heads: int = 2,
    image_size: int = 64,
    stages: int = 2,
    embed_dims: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    vision_heads: Sequence[int] | None = None,
    window_size: int = 4,
    vocab_size: int | None = None,
    script: str | None = None,
    seed: int = 0,
) -> Path:
    """A random ``Florence2ForConditionalGeneration`` + ``Florence2Processor`` saved in ``path``.

    The vision tower is the real DaViT with ``stages`` stages (total stride ``4 * 2**(stages-1)``;
    ``embed_dims``/``depths``/``vision_heads`` override the per-stage sizes and set ``stages``);
    the language model is the real BART encoder-decoder. The tokenizer holds the 1,000
    ``<loc_N>`` tokens and the ``<image>`` token, as Florence-2's does.

    ``script`` (e.g. ``"a cat<loc_100><loc_200><loc_700><loc_900>"``) wires the decoder to write
    ``<s>`` + that text + ``</s>`` whatever the image, so tests can check the real decoding,
    post-processing and pixel-box path against known boxes (see :func:`_wire_script`).
    """
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    _seed(seed)
    if embed_dims is not None:
        stages = len(embed_dims)
    dims = list(embed_dims or [16 * 2**i for i in range(stages)])
    stage_depths = list(depths or [1] * stages)
    stage_heads = list(vision_heads or [1] * stages)
    vocab: dict[str, int] = {}
    for tok in ("<s>", "<pad>", "</s>", "<unk>"):
        vocab.setdefault(tok, len(vocab))
    for ch in byte_chars():
        vocab.setdefault(ch, len(vocab))
    for tok in ("<mask>", "<image>", *[f"<loc_{i}>" for i in range(1000)]):
        vocab.setdefault(tok, len(vocab))
    vocab = _pad_vocab(vocab, vocab_size)
    tokenizer = BartTokenizer(
        vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"}, model_max_length=1024
    )
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(1000)])
    stride = 4 * 2 ** (stages - 1)
    grid = image_size // stride
    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size}, do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    image_processor.image_seq_length = grid * grid + 1
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=florence2_post_processor_config()
    )
    config = Florence2Config(
        text_config=dict(
            model_type="bart", vocab_size=len(vocab), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=d_model * 4,
            decoder_ffn_dim=d_model * 4, max_position_embeddings=grid * grid + 256,
            bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=0,
        ),
        vision_config=dict(
            depths=stage_depths, patch_size=[7] + [3] * (stages - 1), patch_stride=[4] + [2] * (stages - 1),
            patch_padding=[3] + [1] * (stages - 1), patch_prenorm=[False] + [True] * (stages - 1),
            embed_dim=dims, num_heads=stage_heads, num_groups=stage_heads, window_size=window_size,
            projection_dim=d_model, max_position_embeddings=max(50, grid),
        ),
        image_token_id=vocab["<image>"],
    )
    if script is not None:
        config.tie_word_embeddings = False
        config.text_config.tie_word_embeddings = False
    model = Florence2ForConditionalGeneration(config).eval()
    if script is not None:
        body = tokenizer(script, add_special_tokens=False)["input_ids"]
        _wire_script(model, [tokenizer.bos_token_id, *body, tokenizer.eos_token_id])
    out = Path(path)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _wire_script(model: Any, ids: list[int]) -> None:
    """Make a Florence-2 decoder emit ``ids`` (from the decoder start token on), whatever the input.

    Every decoder sub-layer's output projection is zeroed, so (BART being post-LayerNorm) the
    hidden state at step ``t`` is just the normalised sum of the token and position embeddings.
    Token embeddings are shrunk to ~0 and position ``t`` gets the one-hot vector ``e_t``; the
    untied LM head row of ``ids[t]`` points along ``e_t``. Greedy decoding then writes ``ids``.
    """
    import torch

    lm = model.model.language_model
    d_model = lm.config.d_model
    if len(ids) > d_model:
        raise ValueError(f"a script of {len(ids)} tokens needs d_model >= {len(ids)}")
    with torch.no_grad():
        seen: set[int] = set()
        for emb in (lm.shared, lm.encoder.embed_tokens, lm.decoder.embed_tokens):
            if id(emb.weight) not in seen:
                seen.add(id(emb.weight))
                emb.weight.mul_(1e-4)
        pos = lm.decoder.embed_positions
        pos.weight.zero_()
        for t in range(len(ids)):
            pos.weight[t + pos.offset, t] = 1.0
        for layer in lm.decoder.layers:
            for proj in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                proj.weight.zero_()
                if proj.bias is not None:
                    proj.bias.zero_()
        head = model.lm_head.weight
        head.zero_()
        for t, token in enumerate(ids):
            head[token, t] += 10.0

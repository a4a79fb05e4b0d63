"""Dense region captioning with Florence-2 (native ``Florence2ForConditionalGeneration``).

Runs the ``<DENSE_REGION_CAPTION>`` task: Florence-2 writes ``caption<loc_x1><loc_y1><loc_x2><loc_y2>``
runs, where each ``loc`` is one of 1,000 bins over the image side. The processor's
``post_process_generation`` turns them into pixel boxes on the original image; boxes are then
clipped into the image.

Decisions:
- Default checkpoint ``florence-community/Florence-2-base``: the transformers-native conversion
  of ``microsoft/Florence-2-base``. The ``microsoft/...`` repositories hold remote code with a
  different config and weight layout, which the native class cannot load (and mmreact never sets
  ``trust_remote_code``). ``model=`` / ``MMREACT_DENSE_MODEL`` name another id or a local path.
- Decoding budget: the model card's 1,024 new tokens (``max_new_tokens``; never more than the
  decoder's position limit, which is 1,024 for Florence-2), so a busy image's list is not cut
  short; generation stops at the model's end token, so a typical image costs far less. Greedy
  decoding (``num_beams=1``) rather than the card's 3 beams: each beam is one more sequence
  decoded at every step. Both are constructor options and part of the cache key.
- When the budget runs out before the model's end token, the list is cut: the region being
  written is lost and later ones are never written. The observation then says so (the last
  line, see :func:`cut_note`) and the artifact has ``"cut": true``; the budget is never hit
  silently.
- Regions whose caption is empty (or only a fragment of a location token, which the upstream
  parser yields on degenerate output) are dropped; identical (caption, box) pairs are kept once.
- The observation lists at most ``max_regions`` regions (the rest is counted); the artifact has all.
- One forward at a time per loaded model; :meth:`DenseCaptionTool.run_batch` batches images.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..errors import MMReactError
from ..images import Image
from ..observation import Observation
from ._hf import HFExpertTool
from .base import clip_box, fmt_box, limited, size_line

WHAT = "Florence-2 dense captioning"
TASK = "<DENSE_REGION_CAPTION>"
BINS = 1000
_SPECIAL = re.compile(r"</?s>|<pad>")
_RUN = re.compile(r"([^<>]+)((?:<loc_\d+>){4,})")
_LOC = re.compile(r"<loc_(\d+)>")
_LOC_FRAGMENT = re.compile(r"<?/?loc_\d*>?")


def parse_regions(text: str, width: int, height: int) -> list[tuple[str, list[float]]]:
    """Florence-2 region text -> (caption, pixel box) pairs, without the processor.

    Used when the processor has no ``post_process_generation``; same dequantisation as
    transformers' (bin centre: ``(bin + 0.5) * side / 1000``, truncated to whole pixels).
    """
    out: list[tuple[str, list[float]]] = []
    for m in _RUN.finditer(_SPECIAL.sub("", text)):
        bins = [int(b) for b in _LOC.findall(m.group(2))]
        for i in range(0, len(bins) - 3, 4):
            x1, y1, x2, y2 = bins[i:i + 4]
            box = [int((x1 + 0.5) * width / BINS), int((y1 + 0.5) * height / BINS),
                   int((x2 + 0.5) * width / BINS), int((y2 + 0.5) * height / BINS)]
            out.append((m.group(1).strip(), [float(v) for v in box]))
    return out


def regions_from_text(processor: Any, text: str, width: int, height: int) -> list[dict[str, Any]]:
    """Generated text -> ``[{"caption", "box"}]`` with boxes clipped into the image."""
    pairs: Iterable[tuple[str, Any]]
    if hasattr(processor, "post_process_generation"):
        parsed = processor.post_process_generation(text, task=TASK, image_size=(width, height))[TASK]
        pairs = zip(parsed.get("labels", []), parsed.get("bboxes", []))
    else:
        pairs = parse_regions(text, width, height)
    regions: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[float, ...]]] = set()
    for label, box in pairs:
        caption = " ".join(_LOC_FRAGMENT.sub(" ", str(label)).split())
        if not caption:
            continue
        clipped = clip_box(box, width, height)
        key = (caption, tuple(clipped))
        if key not in seen:
            seen.add(key)
            regions.append({"caption": caption, "box": clipped})
    return regions


def cut_note(budget: int) -> str:
    """The line that ends an observation whose list Florence-2 could not finish within ``budget`` tokens."""
    return (f"(The list is cut: the captioner used its whole budget of {budget:,} new tokens before it finished, "
            "so the region it was writing and any after it are missing.)")


def regions_text(image: Image, regions: list[dict[str, Any]], max_regions: int, cut_at: int | None = None) -> str:
    """The observation: size line, one ``caption: [box]`` line per region, and the notes of what is left out."""
    head = size_line(image.width, image.height)
    note = [cut_note(cut_at)] if cut_at is not None else []
    if not regions:
        return "\n".join([head, "Regions: none found.", *note])
    lines = [f"{r['caption']}: {fmt_box(r['box'])}" for r in regions]
    return "\n".join([head, "Regions (caption: [x1, y1, x2, y2]):", *limited(lines, max_regions, "regions"), *note])


def finished(sequence: Any, eos_ids: set[int], budget: int) -> bool:
    """Whether the model ended a generated decoder sequence (decoder start token first) by itself.

    Florence-2's generation config forces the end token at the last position the budget allows
    (``forced_eos_token_id``), so an end token there marks a cut, not a finish.
    """
    tokens = [int(t) for t in list(sequence)]
    first = next((i for i in range(1, len(tokens)) if tokens[i] in eos_ids), None)
    return first is not None and first < budget


class DenseCaptionTool(HFExpertTool):
    """List regions of the image, each with a short caption and its pixel box."""

    name = "dense_caption"
    description = ("List the regions of the image, each with a short description and its box "
                   "[x1, y1, x2, y2] in pixels.")
    default_model = "florence-community/Florence-2-base"
    env_var = "MMREACT_DENSE_MODEL"
    what = WHAT
    model_class = "Florence2ForConditionalGeneration"
    load_hint = "it must be a transformers-native Florence-2 checkpoint such as florence-community/Florence-2-base"

    def __init__(self, model: str | None = None, device: str | None = None, *, max_new_tokens: int = 1024,
                 num_beams: int = 1, max_regions: int = 30, batch_size: int = 4,
                 static_cache: bool | None = None) -> None:
        """``static_cache``: decode with transformers' static KV cache (``None``: on GPU only).
        Figure behind that default, not measured by mmreact: the project's environment notes
        (``ENVIRONMENT.md``) record a random-weight Florence-2-base decoding 128 tokens in 536 ms
        eager and 220 ms with the static cache, bf16 on one H200."""
        super().__init__(model=model, device=device)
        self.static_cache = static_cache
        if min(max_new_tokens, num_beams, max_regions, batch_size) < 1:
            raise MMReactError("DenseCaptionTool needs max_new_tokens, num_beams, max_regions and batch_size >= 1.")
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.max_regions = max_regions
        self.batch_size = batch_size
        self.cache_version = f"{self.cache_version}:{max_new_tokens}:{num_beams}:{max_regions}:cut-note"

    def run(self, image: Image) -> Observation:
        """Describe the regions of one image.

        Args:
            image: the image to look at
        """
        return self._regions([image])[0]

    def _run_many(self, images: list[Image]) -> list[Observation]:
        return self._regions(images)

    def _cache_options(self, device: str) -> dict[str, str]:
        use = device.startswith("cuda") if self.static_cache is None else self.static_cache
        return {"cache_implementation": "static"} if use else {}

    def _regions(self, images: list[Image]) -> list[Observation]:
        import torch

        bundle = self._loaded
        assert bundle is not None, "setup() has not run"
        budget = self.budget(bundle.model)
        with bundle.lock, torch.inference_mode():
            inputs = bundle.processor(text=[TASK] * len(images), images=[im.pil for im in images],
                                      return_tensors="pt")
            ids = bundle.model.generate(
                input_ids=inputs["input_ids"].to(bundle.device),
                attention_mask=inputs["attention_mask"].to(bundle.device),
                pixel_values=inputs["pixel_values"].to(bundle.device, bundle.dtype),
                max_new_tokens=budget, num_beams=self.num_beams, do_sample=False,
                **self._cache_options(bundle.device),
            )
            texts = bundle.processor.batch_decode(ids, skip_special_tokens=False)
            per_image = [regions_from_text(bundle.processor, t, im.width, im.height) for t, im in zip(texts, images)]
            eos = bundle.model.generation_config.eos_token_id
            eos_ids = {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None}
            cut = [bool(eos_ids) and not finished(seq, eos_ids, budget) for seq in ids]
        out = []
        for im, regions, was_cut in zip(images, per_image, cut):
            artifact: dict[str, Any] = {"regions": regions}
            if was_cut:
                artifact["cut"] = True
            out.append(Observation(text=regions_text(im, regions, self.max_regions, budget if was_cut else None),
                                   artifact=artifact))
        return out

    def budget(self, model: Any) -> int:
        """New tokens allowed: ``max_new_tokens``, at most the decoder's position limit."""
        config = getattr(getattr(model, "config", None), "text_config", None)
        limit = getattr(config, "max_position_embeddings", None)
        return min(self.max_new_tokens, int(limit)) if isinstance(limit, int) and limit > 0 else self.max_new_tokens

"""Whole-image captioning with BLIP (``BlipForConditionalGeneration`` + ``BlipProcessor``).

Default checkpoint ``Salesforce/blip-image-captioning-large``; ``CaptionTool(model=...)`` or
``MMREACT_CAPTION_MODEL`` name another id or a local directory. Weights come from that folder or
the hub's cache, and are fetched from the hub on first use when it can be reached (see
:mod:`mmreact.weights`).

Decisions:
- Unconditional captioning (no text prompt), greedy decoding, at most 30 new tokens: the
  captions BLIP was trained to write are one short sentence, and greedy is the cheapest.
  ``num_beams``/``max_new_tokens`` are constructor options (they are part of the cache key).
- BLIP-large sometimes starts a caption with the training-data artefact "arafed"/"araffe";
  those non-words are removed.
- One forward at a time per loaded model (a lock): tokenizers and ``generate`` are not promised
  to be thread-safe, and one GPU gains nothing from interleaving. Throughput comes from
  :meth:`CaptionTool.run_batch`, which captions many images in one batched ``generate``.
"""

from __future__ import annotations

import re

from ..errors import MMReactError
from ..images import Image
from ..observation import Observation
from ._hf import HFExpertTool
from .base import size_line

WHAT = "BLIP captioning"
_ARTEFACT = re.compile(r"\baraf+e*d?\b\s*", re.IGNORECASE)


def clean_caption(text: str) -> str:
    """Strip whitespace and BLIP's "arafed" artefacts; collapse spaces."""
    return " ".join(_ARTEFACT.sub("", text).split())


class CaptionTool(HFExpertTool):
    """Describe the whole image in one sentence."""

    name = "caption"
    description = "Describe the whole image in one sentence."
    default_model = "Salesforce/blip-image-captioning-large"
    env_var = "MMREACT_CAPTION_MODEL"
    what = WHAT
    model_class = "BlipForConditionalGeneration"
    processor_class = "BlipProcessor"

    def __init__(self, model: str | None = None, device: str | None = None, *, max_new_tokens: int = 30,
                 num_beams: int = 1, batch_size: int = 8) -> None:
        super().__init__(model=model, device=device)
        if max_new_tokens < 1 or num_beams < 1 or batch_size < 1:
            raise MMReactError("CaptionTool needs max_new_tokens, num_beams and batch_size of at least 1.")
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.batch_size = batch_size
        self.cache_version = f"{self.cache_version}:{max_new_tokens}:{num_beams}"

    def run(self, image: Image) -> Observation:
        """Caption one image.

        Args:
            image: the image to describe
        """
        return self._caption([image])[0]

    def _run_many(self, images: list[Image]) -> list[Observation]:
        return self._caption(images)

    def _caption(self, images: list[Image]) -> list[Observation]:
        import torch

        bundle = self._loaded
        assert bundle is not None, "setup() has not run"
        with bundle.lock, torch.inference_mode():
            inputs = bundle.processor(images=[im.pil for im in images], return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(bundle.device, bundle.dtype)
            ids = bundle.model.generate(pixel_values=pixel_values, max_new_tokens=self.max_new_tokens,
                                        num_beams=self.num_beams, do_sample=False)
            texts = bundle.processor.batch_decode(ids, skip_special_tokens=True)
        out = []
        for im, raw in zip(images, texts):
            caption = clean_caption(raw)
            shown = caption or "(the model produced no caption)"
            out.append(Observation(text=f"{size_line(im.width, im.height)}\nCaption: {shown}",
                                   artifact={"caption": caption}))
        return out

"""Image tags by CLIP zero-shot classification over a fixed vocabulary.

Default checkpoint ``openai/clip-vit-base-patch32`` (``CLIPModel`` + ``CLIPProcessor``);
``TagsTool(model=...)`` or ``MMREACT_TAGS_MODEL`` name another id or a local directory. The
vocabulary ships as ``mmreact/data/tags.txt`` (COCO and Open Images classes, more objects, scenes,
attributes, document types); ``TagsTool(vocabulary=[...])`` replaces it.

Decisions:
- Each tag is embedded once per process and (model, device, dtype, template, vocabulary), as
  ``template.format(tag)`` through CLIP's text tower, L2-normalised, kept in the shared model
  state; a call only embeds the image. (On a CPU the ~1,600 default tags take several seconds
  once, on the first call; on a GPU well under a second.)
- Scores are the softmax over the whole vocabulary of CLIP's scaled cosine similarities (the
  zero-shot classifier CLIP was trained as), computed in float32. Because the mass is shared by
  ~1,600 tags, scores are small for broad images; ``min_score`` drops the weak tail, but the
  top 3 are always kept so the model never gets an empty list.
- ``top_k`` is clamped to 1..50: a model asking for more gets 50, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from .._hashing import digest as text_digest
from ..errors import ConfigError
from ..images import Image
from ..loading import shared
from ..observation import Observation
from ._hf import HFBundle, HFExpertTool
from .base import size_line

WHAT = "CLIP tagging"
MAX_TOP_K = 50
KEEP_AT_LEAST = 3
TEXT_BATCH = 256


def _normalise(tags: Sequence[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for tag in tags:
        clean = " ".join(str(tag).split())
        if clean:
            out.setdefault(clean, None)
    return tuple(out)


@lru_cache(maxsize=1)
def default_vocabulary() -> tuple[str, ...]:
    """The shipped tag list (``mmreact/data/tags.txt``): comment and blank lines skipped, de-duplicated."""
    text = resources.files("mmreact").joinpath("data/tags.txt").read_text(encoding="utf-8")
    return _normalise([line for line in text.splitlines() if not line.lstrip().startswith("#")])


def _features(output: Any) -> Any:
    """transformers 5 returns a model output whose ``pooler_output`` is the projection; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


def _text_embeddings(bundle: HFBundle, prompts: Sequence[str]) -> Any:
    """L2-normalised float32 text embeddings ``[len(prompts), dim]`` on the model's device."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
    chunks = []
    with bundle.lock, torch.inference_mode():
        for start in range(0, len(order), TEXT_BATCH):
            batch = [prompts[i] for i in order[start:start + TEXT_BATCH]]
            tokens = bundle.processor.tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
            feats = _features(bundle.model.get_text_features(
                input_ids=tokens["input_ids"].to(bundle.device),
                attention_mask=tokens["attention_mask"].to(bundle.device),
            )).float()
            chunks.append(torch.nn.functional.normalize(feats, dim=-1))
        stacked = torch.cat(chunks)
        result = torch.empty_like(stacked)
        result[torch.tensor(order, device=stacked.device)] = stacked
    return result


class TagsTool(HFExpertTool):
    """Tag the image with objects, scene and attributes, each with a confidence score."""

    name = "tags"
    description = "List short tags (objects, scene, attributes) that fit the image, with confidence scores."
    default_model = "openai/clip-vit-base-patch32"
    env_var = "MMREACT_TAGS_MODEL"
    what = WHAT
    model_class = "CLIPModel"
    processor_class = "CLIPProcessor"

    def __init__(self, model: str | None = None, device: str | None = None, *,
                 vocabulary: Sequence[str] | None = None, template: str = "a photo of {}.",
                 min_score: float = 0.01, batch_size: int = 32) -> None:
        super().__init__(model=model, device=device)
        if vocabulary is not None and (isinstance(vocabulary, str) or not _normalise(vocabulary)):
            raise ConfigError("TagsTool(vocabulary=...) needs a non-empty list of tag strings.")
        if "{}" not in template:
            raise ConfigError("TagsTool(template=...) needs a '{}' where the tag goes, e.g. 'a photo of {}.'.")
        if not 0.0 <= min_score <= 1.0 or batch_size < 1:
            raise ConfigError("TagsTool needs 0 <= min_score <= 1 and batch_size >= 1.")
        self.vocabulary = _normalise(vocabulary) if vocabulary is not None else default_vocabulary()
        self.template = template
        self.min_score = min_score
        self.batch_size = batch_size
        digest = text_digest("\n".join([template, *self.vocabulary]))
        self._vocab_digest = digest
        self.cache_version = f"{self.cache_version}:{digest}:{min_score}"
        self._text: Any = None

    def setup(self) -> None:
        super().setup()
        bundle = self._loaded  # not self.bundle: that would re-enter ensure_ready()
        assert bundle is not None
        prompts = [self.template.format(tag) for tag in self.vocabulary]
        key = (TagsTool, self.model_id, bundle.device, str(bundle.dtype), "text", self._vocab_digest)
        self._text = shared(key, lambda: _text_embeddings(bundle, prompts))

    def run(self, image: Image, top_k: int = 10) -> Observation:
        """Tag one image.

        Args:
            image: the image to tag
            top_k: how many tags to return at most (1-50)
        """
        return self._tag([image], top_k)[0]

    def _run_many(self, images: list[Image], top_k: int = 10) -> list[Observation]:
        return self._tag(images, top_k)

    def _tag(self, images: list[Image], top_k: int) -> list[Observation]:
        import torch

        bundle = self._loaded
        assert bundle is not None and self._text is not None, "setup() has not run"
        k = max(1, min(int(top_k), MAX_TOP_K, len(self.vocabulary)))
        with bundle.lock, torch.inference_mode():
            pixels = bundle.processor.image_processor(images=[im.pil for im in images], return_tensors="pt")
            feats = _features(bundle.model.get_image_features(
                pixel_values=pixels["pixel_values"].to(bundle.device, bundle.dtype))).float()
            feats = torch.nn.functional.normalize(feats, dim=-1)
            scale = bundle.model.logit_scale.float().exp()
            probs = (scale * feats @ self._text.T).softmax(dim=-1)
            scores, idx = probs.topk(k, dim=-1)
            scores, idx = scores.cpu().tolist(), idx.cpu().tolist()
        out = []
        for im, row_scores, row_idx in zip(images, scores, idx):
            tags = [{"tag": self.vocabulary[j], "score": round(float(s), 4)}
                    for n, (s, j) in enumerate(zip(row_scores, row_idx))
                    if n < KEEP_AT_LEAST or s >= self.min_score]
            listing = ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in tags)
            out.append(Observation(text=f"{size_line(im.width, im.height)}\nTags (score): {listing}",
                                   artifact={"tags": tags}))
        return out

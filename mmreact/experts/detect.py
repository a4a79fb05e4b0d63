"""Object detection with ultralytics YOLO: labelled boxes plus per-label counts.

Decisions:
- Weights on demand, through ultralytics' own downloader. The weights path is resolved here (an
  explicit path, else the file name looked up in the current directory, ``MMREACT_WEIGHTS_DIR`` and
  ultralytics' ``weights_dir`` setting). A missing official file (``yolo11n.pt``) or a URL
  (``MMREACT_DETECT_MODEL=https://.../best.pt``) is fetched by :class:`YoloWeights` with
  ``ultralytics.utils.downloads.safe_download`` (which publishes the file only once its size is
  right) into ``MMREACT_WEIGHTS_DIR`` or ultralytics' ``weights_dir``, on first use when the host
  answers (see :mod:`mmreact.weights`) or with ``mmreact pull detect``. ultralytics itself is never
  left to download. A ``.yaml`` model config (``yolo11n.yaml`` or a path) builds a randomly
  initialised model offline.
- ``YOLO_OFFLINE=1`` is set (unless already set) before ultralytics is imported: otherwise its
  import probes DNS and its telemetry may phone home.
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
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WeightsMissingError, one_line
from ..images import Image
from ..loading import shared, weights_fingerprint
from ..observation import Observation
from ..weights import (
    FileToFetch,
    Plan,
    Weights,
    is_url,
    remote_size,
    url_file_name,
    whole_zip,
)
from ..weights.policy import is_connection_error, unreachable
from .base import ExpertTool, clip_box, fmt_box, limited, size_line

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


def _weights_name(text: str) -> str | None:
    """The file name a bare name or URL stands for (``yolo11n`` -> ``yolo11n.pt``), else None (a path)."""
    if is_url(text):
        return url_file_name(text) or None
    path = Path(text)
    if path.name != text:
        return None
    return path.name if path.suffix else f"{path.name}.pt"  # like ultralytics: yolo11n -> yolo11n.pt


def find_model(model_id: str) -> str | None:
    """The local path (or built-in config name) ultralytics should load for ``model_id``, else None.

    Raises :class:`ConfigError` for a model config that does not exist. Never downloads.
    """
    text = model_id.strip()
    path = Path(text).expanduser()
    if path.suffix.lower() in _CONFIG_SUFFIXES and not is_url(text):
        if path.is_file():
            return str(path.resolve())
        if path.name == text and _builtin_config(text):
            return text
        raise ConfigError(
            f"No YOLO model config '{text}': give the path of a .yaml file or an ultralytics config name "
            "such as yolo11n.yaml."
        )
    if not is_url(text) and path.exists():
        return str(path.resolve())
    name = _weights_name(text)
    if name is not None:
        for directory in weights_dirs():
            candidate = directory / name
            if candidate.exists():
                return str(candidate.resolve())
    return None


def missing_weights_message(model_id: str) -> str:
    if _weights_name(model_id) is None:
        return (
            f"The YOLO weights file {model_id} does not exist: fix the path given as model= or "
            "MMREACT_DETECT_MODEL, or use a .yaml config for a randomly initialised model."
        )
    return YoloWeights(model_id)._missing()


#: ultralytics' published weight names (the exact list is checked against ultralytics when fetching)
_OFFICIAL = re.compile(r"(yolo[\w.-]*|rtdetr-\w+|sam[\w.]*_\w+|FastSAM-\w+|mobile_sam)\.pt")


def _release_url(name: str) -> str:
    """ultralytics' download URL for an official weights file (its own release tag and asset list)."""
    import inspect

    _prepare_env()
    with keep_torch_threads():
        from ultralytics.utils import downloads

    if name not in downloads.GITHUB_ASSETS_NAMES:
        raise WeightsMissingError(
            f"ultralytics publishes no weights file named '{name}': give a path or a URL in MMREACT_DETECT_MODEL.")
    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    return f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"


def download_dir() -> Path:
    """Where fetched YOLO weights go: ``MMREACT_WEIGHTS_DIR``, else ultralytics' ``weights_dir``."""
    if env_dir := os.environ.get("MMREACT_WEIGHTS_DIR"):
        return Path(env_dir).expanduser()
    _prepare_env()
    with keep_torch_threads():
        from ultralytics.utils import SETTINGS

    return Path(SETTINGS["weights_dir"])


class YoloWeights(Weights):
    """A YOLO ``.pt`` file: found locally, or fetched with ultralytics' own downloader."""

    pull = "mmreact pull detect"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id.strip()
        self.name = _weights_name(self.model_id) or self.model_id
        self.what = f"YOLO weights '{self.name}'"
        places = ", ".join(str(d) for d in weights_dirs())
        extra = "" if os.environ.get("MMREACT_WEIGHTS_DIR") else " or a folder named by MMREACT_WEIGHTS_DIR"
        self.alternative = f", or put {self.name} into one of {places}{extra}"

    def resolved(self) -> str | None:
        try:
            path = find_model(self.model_id)
        except ConfigError:
            return None
        if path is not None and path.lower().endswith(".pt") and not whole_zip(Path(path)):
            return None
        return path

    def problem(self) -> str | None:
        try:
            path = find_model(self.model_id)
        except ConfigError as exc:
            return str(exc)
        if path is None:
            if _weights_name(self.model_id) is None:
                return missing_weights_message(self.model_id)  # a path that does not exist
            if not is_url(self.model_id) and not _OFFICIAL.fullmatch(self.name):
                return (f"The YOLO weights '{self.name}' are not on this machine and ultralytics publishes no file "
                        f"of that name: give a path or a URL in MMREACT_DETECT_MODEL{self.alternative}.")
            return None
        if path.lower().endswith(".pt") and Path(path).is_file() and not whole_zip(Path(path)):
            return f"The YOLO weights file {path} is incomplete (not a whole .pt file): delete it and run `{self.pull}`."
        return None

    def source_url(self) -> str:
        return self.model_id if is_url(self.model_id) else "https://github.com/ultralytics/assets/releases"

    def url(self) -> str:
        return self.model_id if is_url(self.model_id) else _release_url(self.name)

    def plan(self) -> Plan:
        url = self.url()
        target = download_dir() / self.name
        cached = target.is_file() and whole_zip(target)
        try:
            size = None if cached else remote_size(url)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
            if is_connection_error(exc):
                raise WeightsMissingError(unreachable(url, self.what)) from None
            raise WeightsMissingError(f"Could not size the {self.what} at {url} ({one_line(exc, 200)}).") from None
        return Plan(source=url, destination=str(target.parent), files=(FileToFetch(self.name, size, cached),))

    def _fetch(self, plan: Plan, progress: bool) -> str:
        target = Path(plan.destination) / self.name
        if not plan.to_fetch:
            return str(target.resolve())
        _prepare_env()
        with keep_torch_threads():
            from ultralytics.utils.downloads import safe_download

        try:
            safe_download(url=plan.source, file=target, unzip=False, min_bytes=1e5, progress=progress, retry=1)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
            raise WeightsMissingError(
                f"Downloading the {self.what} from {plan.source} failed ({one_line(exc, 200)}); "
                f"run `{self.pull}` again.") from None
        if not whole_zip(target):
            target.unlink(missing_ok=True)
            raise WeightsMissingError(f"{plan.source} did not give a whole YOLO .pt file; nothing was kept.")
        return str(target.resolve())


def _prepare_env() -> None:
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
    def weights(self) -> YoloWeights:
        return YoloWeights(self.model_id)

    def stack_problem(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("ultralytics") is None:
            return "detect needs ultralytics: pip install 'mmreact[vision]'."
        return None

    def setup(self) -> None:
        find_model(self.model_id)  # a model config that does not exist raises ConfigError
        source = self.ensure_weights()
        assert source is not None
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

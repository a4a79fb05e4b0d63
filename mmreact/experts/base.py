"""Shared machinery for experts: device choice, once-per-process model loading, weight lookup,
and the text formatting every observation uses.

Box convention (everywhere in mmreact): pixel ``[x1, y1, x2, y2]`` on the original image, origin
top-left, x to the right, y down, rounded to whole pixels in observation text.

Weights on demand (see :mod:`mmreact.weights`): each expert names its weights source
(:meth:`ExpertTool.weights`); complete weights on this machine are used as they are, missing ones
download on first use when their host can be reached (unless ``MMREACT_ALLOW_DOWNLOAD=0``), and
nothing opens a socket under ``MMREACT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._hashing import digest
from ..errors import WeightsMissingError
from ..tools import Tool

if TYPE_CHECKING:
    from ..weights import Status, Weights

T = TypeVar("T")

_models: dict[Any, Any] = {}
_locks: dict[Any, threading.Lock] = {}
_registry_lock = threading.Lock()
#: Held while any loader runs: transformers' ``from_pretrained`` is not thread-safe across models
#: (two different checkpoints loading at once in two threads can come out with meta or untied
#: weights), and the agent runs one step's calls in parallel threads.
_load_lock = threading.RLock()


def downloads_allowed() -> bool:
    """Whether weights missing here may be fetched from the Hugging Face hub on first use, now
    (no offline switch, ``MMREACT_ALLOW_DOWNLOAD`` not ``0``, and the hub answers the probe)."""
    from ..weights import policy
    from ..weights.hub import endpoint

    return policy.may_download(endpoint())


def select_device(preference: str | None = None) -> str:
    """``preference``, else ``MMREACT_DEVICE``, else ``cuda`` when a GPU is present, else ``cpu``."""
    choice = preference or os.environ.get("MMREACT_DEVICE")
    if choice:
        return choice
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def select_dtype(device: str) -> Any:
    """Half precision on GPU (bf16 where supported), fp32 on CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def shared(key: Any, loader: Callable[[], T], *, exclusive: bool = True) -> T:
    """Load a model once per process (per ``key``) and share it across agents and threads.

    ``exclusive`` loaders (transformers, torch) run one at a time; a loader that touches neither
    (llama.cpp) passes ``False`` and loads alongside them.
    """
    model = _models.get(key)
    if model is not None:
        return model
    with _registry_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        model = _models.get(key)
        if model is None:
            if exclusive:
                with _load_lock:
                    model = loader()
            else:
                model = loader()
            _models[key] = model
    return model


def loaded_models() -> list[Any]:
    """Keys of the models loaded so far in this process."""
    return list(_models)


def hf_local_path(model_id: str, needs: Sequence[str] = ("config", "weights")) -> str | None:
    """The local folder of ``model_id`` (a folder, or a cached hub snapshot) when it is complete
    (``needs``: see :mod:`mmreact.weights.hub`), else None. Never touches the network."""
    from ..weights.hub import HubWeights

    return HubWeights(model_id, needs=needs).resolved()


def require_hf_weights(model_id: str, what: str, option: str) -> str:
    """The complete local folder of ``model_id`` or, when it may download now, the id itself
    (transformers then fetches it). Raises :class:`WeightsMissingError` in one sentence."""
    local = hf_local_path(model_id)
    if local is not None:
        return local
    if downloads_allowed():
        return model_id
    raise WeightsMissingError(missing_hf_message(model_id, what, option))


def missing_hf_message(model_id: str, what: str, option: str) -> str:
    """One sentence: the weights are not here (or are incomplete), and how to get them."""
    from ..weights.hub import HubWeights

    return HubWeights(model_id, what=what, option=option).missing_sentence()


def weights_fingerprint(path: str | os.PathLike[str] | None) -> str:
    """Size and modification time of a weights file, or of every file in a weights folder (links
    followed, so a Hugging Face snapshot's blobs count): it changes whenever the files do."""
    if path is None:
        return "none"
    from pathlib import Path

    p = Path(path)
    try:
        files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
        parts = [f"{f.name}:{(st := f.stat()).st_size}:{st.st_mtime_ns}" for f in files]
    except OSError:
        return "unreadable"
    if not parts:
        return "absent"
    return digest("\n".join(parts))


# -- observation text --------------------------------------------------------------------
def size_line(width: int, height: int) -> str:
    return f"Image size: {width}x{height} pixels (boxes are [x1, y1, x2, y2], origin top-left)."


def fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(str(int(round(float(v)))) for v in box) + "]"


def clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    return [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)]


def limited(lines: Sequence[str], limit: int, what: str) -> list[str]:
    """At most ``limit`` lines, with a note of how many were left out."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"... and {len(lines) - limit} more {what} left out."]


class ExpertTool(Tool):
    """Base for the built-in experts: cached results keyed by model id and arguments.

    Subclasses set ``name``, ``description``, ``default_model``, ``env_var`` (the variable that
    names another checkpoint) and implement ``run`` and ``setup`` (which loads from
    :meth:`ensure_weights`), plus :meth:`weights` (where the weights come from) and
    :meth:`stack_problem` (a missing package); :meth:`check` follows from those two.
    """

    cacheable = True
    default_model: str = ""
    env_var: str = ""

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        super().__init__()
        self.model_id = model or (os.environ.get(self.env_var) if self.env_var else None) or self.default_model
        self.device_preference = device
        self.cache_version = f"{type(self).__name__}:{self.model_id}"

    @property
    def device(self) -> str:
        return select_device(self.device_preference)

    # -- weights ------------------------------------------------------------------------
    def weights(self) -> Weights | None:
        """Where this expert's weights come from (subclasses return their source; None: none needed)."""
        return None

    def resolved_weights(self) -> str | None:
        """The local path of the complete weights this expert would load now, else None.

        Never touches the network; a partial download is not complete.
        """
        source = self.weights()
        return source.resolved() if source is not None else None

    def stack_problem(self) -> str | None:
        """One sentence when a package this expert needs is not installed, else None."""
        return None

    def weights_status(self) -> Status:
        """The state of the weights here (ready, download on first use, offline...), with its sentence."""
        from ..weights import Status

        problem = self.stack_problem()
        if problem:
            return Status("unavailable", message=problem)
        source = self.weights()
        return source.status() if source is not None else Status("ready")

    def check(self) -> str | None:
        """None when the expert can run here (its weights are here, or download on first use)."""
        status = self.weights_status()
        return None if status.offered else status.message

    def ensure_weights(self) -> str | None:
        """The local weights path, downloading the weights first when they may be (first use)."""
        problem = self.stack_problem()
        if problem:
            from ..errors import MMReactError

            raise MMReactError(problem)
        source = self.weights()
        return source.ensure() if source is not None else None

    # -- what a cached result depends on --------------------------------------------------
    def weights_path(self) -> str | None:
        """The local file or folder of the weights this expert runs (:meth:`resolved_weights`), or
        ``None`` when they are not here."""
        return self.resolved_weights()

    def dtype_name(self) -> str:
        """The precision the model runs in on :attr:`device` (part of the cache key)."""
        return str(select_dtype(self.device)).removeprefix("torch.")

    _identity: str | None = None

    def _current_identity(self) -> str:
        path = self.weights_path()
        return "|".join((self.cache_version, path or "unresolved", weights_fingerprint(path), self.device,
                         self.dtype_name()))

    def cache_identity(self) -> str:
        """The result-cache identity: settings (``cache_version``: model id and options), the
        resolved weights and a fingerprint of their files (:func:`weights_fingerprint`), the device
        and the dtype. A retrained ``best.pt`` at the same path, another snapshot of a
        checkpoint, a GPU instead of the CPU: each gets fresh results, on disk too.

        Once the model is loaded, the identity is that of the weights it loaded (taken just before
        loading), so results are always filed under the weights that produced them; a tool created
        after the files changed loads them anew (the shared-model keys hold the fingerprint too)."""
        return self._identity if self._identity is not None else self._current_identity()

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._setup_lock:
            if not self._ready:
                identity = self._current_identity()
                self.setup()
                self._identity = identity
                self._ready = True

    #: Images per batched forward in :meth:`run_batch`.
    batch_size: int = 8

    def batch_group(self, image: Any) -> Any:
        """Images with equal groups may share one forward pass (default: all)."""
        return None

    def _run_many(self, images: list[Any], **options: Any) -> list[Any]:
        """Observations for several images in one forward pass (subclasses implement)."""
        raise NotImplementedError

    def run_batch(self, images: Sequence[Any], **options: Any) -> list[Any]:
        """Run on many images (paths, PIL images, arrays, or :class:`~mmreact.images.Image`).

        Each result is the observation a single call gives for that image, and goes through the
        same shared result cache: images seen before are not run again, and the batch's results
        answer later single calls. The rest run ``batch_size`` at a time, grouped by
        :meth:`batch_group`.
        """
        from ..cache import ResultCache, result_cache
        from ..images import load_image

        loaded = [load_image(s) for s in images]
        bound = self.bind((), {**options, "image": "<image>"})
        del bound["image"]
        cache = result_cache()
        identity = self.cache_identity()
        keys = [ResultCache.key(self.name, identity, {"image": im, **bound}) for im in loaded]
        out: list[Any] = [cache.get(k) for k in keys]
        groups: dict[Any, list[int]] = {}
        for i, obs in enumerate(out):
            if obs is None:
                groups.setdefault(self.batch_group(loaded[i]), []).append(i)
        if groups:
            self.ensure_ready()
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start:start + self.batch_size]
                for i, obs in zip(chunk, self._run_many([loaded[i] for i in chunk], **bound)):
                    cache.put(keys[i], obs)
                    out[i] = obs
        return out

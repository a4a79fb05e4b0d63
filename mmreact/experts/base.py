"""What every built-in expert shares: :class:`ExpertTool` (weights on demand, cache identity) and the
text formatting every observation uses. Model loading itself is :mod:`mmreact.loading`.

Box convention (everywhere in mmreact): pixel ``[x1, y1, x2, y2]`` on the original image, origin
top-left, x to the right, y down, rounded to whole pixels in observation text.

Weights on demand (see :mod:`mmreact.weights`): each expert names its weights source
(:meth:`ExpertTool.weights`); complete weights on this machine are used as they are, missing ones
download on first use when their host can be reached (unless ``MMREACT_ALLOW_DOWNLOAD=0``), and
nothing opens a socket under ``MMREACT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..loading import select_device, select_dtype, weights_fingerprint
from ..tools import Tool

if TYPE_CHECKING:
    from ..weights import Status, Weights


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

    def weights_here(self) -> bool:
        try:
            return self.weights() is None or self.resolved_weights() is not None
        except Exception:  # noqa: BLE001 - weights that cannot even be located are not here
            return False

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

"""Shared model loading: once per process, on the right device, from weights found on this machine.

Every model mmreact runs (the experts, the ``hf:`` and ``gguf:`` LLMs, the end-to-end systems of
:mod:`mmreact.mllm`, grounding's sentence embedder) loads through :func:`shared`: once per process
per key, shared by every agent and thread. Devices and dtypes are chosen here (GPU with bf16/fp16
when present, CPU fp32 otherwise; ``MMREACT_DEVICE`` overrides), local Hugging Face weights are
looked up here (never touching the network), and :func:`weights_fingerprint` says when the files
behind a path changed (result caches key on it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._hashing import digest
from .errors import WeightsMissingError

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
    from .weights import policy
    from .weights.hub import endpoint

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
    from .weights.hub import HubWeights

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
    from .weights.hub import HubWeights

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

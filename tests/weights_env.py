"""Shared set-up for the weights-on-demand tests: tiny checkpoints served by a loopback hub, and
environments (in-process or for a subprocess) pointing every cache and endpoint at temp folders.

Nothing here touches the user's caches: ``HF_HOME``, ``HF_HUB_CACHE``, ``MMREACT_WEIGHTS_DIR`` and
``EASYOCR_MODULE_PATH`` all point into the test's temp folder, and every endpoint is 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402
from fake_hub import FakeHub, SilentHub  # noqa: E402
from servers import free_port  # noqa: E402

#: Files a real repository also holds that a transformers checkpoint does not need (never fetched).
JUNK = {"README.md": b"# a model card\n", "tf_model.h5": b"h5" * 500, "onnx/model.onnx": b"onnx" * 100,
        "flax_model.msgpack": b"m" * 300}
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MMREACT_OFFLINE", "MMREACT_ALLOW_DOWNLOAD")
MODEL_VARS = ("MMREACT_CAPTION_MODEL", "MMREACT_DENSE_MODEL", "MMREACT_TAGS_MODEL", "MMREACT_DETECT_MODEL",
              "MMREACT_OCR_LANGS", "MMREACT_DEVICE", "HF_TOKEN")


def build_checkpoints(root: Path) -> dict[str, Path]:
    """Tiny random BLIP, CLIP and Florence-2 checkpoints of the real classes, saved under ``root``."""
    return {
        "caption": tiny_models.build_blip(root / "blip"),
        "tags": tiny_models.build_clip(root / "clip"),
        "dense_caption": tiny_models.build_florence2(root / "florence2"),
    }


#: A loopback port nothing listens on: connecting is refused at once.
closed_port = free_port


def online_env(tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The environment of a subprocess with a network that is only ``endpoint`` (loopback)."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS + MODEL_VARS}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp / "hf"), HF_HUB_CACHE=str(tmp / "hf" / "hub"),
               HF_HUB_DISABLE_TELEMETRY="1", MMREACT_WEIGHTS_DIR=str(tmp / "weights"),
               EASYOCR_MODULE_PATH=str(tmp / "easyocr"), YOLO_OFFLINE="1",
               # nothing may reach past loopback: the one expert with a remote default is pointed here too
               MMREACT_DETECT_MODEL=f"http://127.0.0.1:{closed_port()}/yolo-absent.pt")
    env.update(extra)
    return env


def go_online(monkeypatch: pytest.MonkeyPatch, tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The same, for this process: environment, the hub client's import-time constants, no probe memory,
    a tool registry built afresh (all put back when the test ends)."""
    from huggingface_hub import constants

    from mmreact.tools import registry
    from mmreact.weights import policy

    env = online_env(tmp, endpoint, **extra)
    for name in OFFLINE_VARS + MODEL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(policy, "_probes", {})
    monkeypatch.setattr(registry, "_discovered", None)  # tools read their model ids from this environment
    return env


__all__ = ["FakeHub", "JUNK", "SilentHub", "build_checkpoints", "closed_port", "go_online", "online_env"]

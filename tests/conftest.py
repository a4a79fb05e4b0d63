"""Test-wide guards: nothing downloads, no real network, and a clean tool registry per test."""

from __future__ import annotations

import os
import tempfile

# Set before anything imports huggingface_hub / transformers / ultralytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.pop("MMREACT_ALLOW_DOWNLOAD", None)
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)
# mmreact's own per-user state (the llama.cpp pre-decode check) goes to a folder of this run.
os.environ["MMREACT_STATE_DIR"] = tempfile.mkdtemp(prefix="mmreact-state-")

import pytest  # noqa: E402


@pytest.fixture
def tiny_png(tmp_path):
    """A small real PNG file on disk."""
    from PIL import Image as PILImage

    path = tmp_path / "tiny.png"
    PILImage.new("RGB", (32, 24), (200, 30, 30)).save(path)
    return path

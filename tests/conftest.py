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


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Every tiny end-to-end model of ``mllm_tiny``, built once for the session (the mllm and the
    solved-examples tests use the same ones, so each loads once)."""
    import mllm_tiny as mt

    root = tmp_path_factory.mktemp("mllm")
    return {
        "llava": mt.build_llava(root / "tiny-llava"),
        "llava-no-template": mt.build_llava(root / "tiny-llava-plain", chat_template=False),
        "llava_next": mt.build_llava_next(root / "tiny-llava-next"),
        "blip2": mt.build_blip2(root / "tiny-blip2"),
        "instructblip": mt.build_instructblip(root / "tiny-instructblip"),
        "idefics": mt.build_idefics(root / "tiny-idefics"),
        "vipllava": mt.build_vipllava(root / "tiny-vipllava"),
    }

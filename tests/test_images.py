"""Image loading and validation: every accepted form, every rejected one with one sentence."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image as PILImage

from mmreact.errors import ImageError
from mmreact.images import ImagePolicy, ImageTable, load_image


def test_accepts_paths_pil_and_arrays(tiny_png):
    a = load_image(tiny_png)
    b = load_image(str(tiny_png))
    c = load_image(PILImage.open(tiny_png))
    d = load_image(np.asarray(PILImage.open(tiny_png)))
    assert a == b == c == d and a.size == (32, 24) and a.pil.mode == "RGB"
    assert a.source == str(tiny_png) and d.source.startswith("<numpy")


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((5, 6), dtype=np.uint8),
        np.zeros((5, 6, 1), dtype=np.uint8),
        np.zeros((5, 6, 4), dtype=np.uint8),
        np.zeros((5, 6, 3), dtype=np.float32),
        np.zeros((5, 6), dtype=bool),
        np.zeros((5, 6, 3), dtype=np.uint16),
    ],
)
def test_array_forms_normalise_to_rgb(array):
    img = load_image(array)
    assert img.pil.mode == "RGB" and img.size == (6, 5)


def test_float_arrays_scale_and_modes_convert(tmp_path):
    assert load_image(np.ones((2, 2, 3), dtype=np.float64)).to_numpy()[0, 0].tolist() == [255, 255, 255]
    rgba = PILImage.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent -> white background
    assert load_image(rgba).to_numpy()[0, 0].tolist() == [255, 255, 255]
    grey16 = PILImage.fromarray(np.full((3, 3), 4000, dtype=np.uint16))
    assert load_image(grey16).pil.mode == "RGB"
    cmyk = tmp_path / "cmyk.jpg"
    PILImage.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)
    assert load_image(cmyk).pil.mode == "RGB"


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    img = PILImage.new("RGB", (40, 20), (0, 128, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    img.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_rejections_are_one_sentence(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    truncated = tmp_path / "cut.png"
    PILImage.new("RGB", (200, 200), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:120])
    cases = {
        tmp_path / "missing.png": "No such image file",
        tmp_path: "is a directory",
        empty: "is empty (0 bytes)",
        text: "not an image file",
        truncated: "truncated or corrupt",
        "https://example.com/cat.jpg": "is a URL",
    }
    for source, message in cases.items():
        with pytest.raises(ImageError, match=re.escape(message)) as info:
            load_image(source)
        assert "\n" not in str(info.value)
    with pytest.raises(ImageError, match="Cannot use a dict"):
        load_image({"not": "an image"})
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((3, 3, 7)))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((3, 3, 3), np.nan))


def test_decompression_bomb_and_size_limits(tmp_path):
    bomb = tmp_path / "bomb.png"
    PILImage.new("1", (12000, 12000)).save(bomb)  # tiny file, 144 M pixels
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(bomb)
    with pytest.raises(ImageError, match="over the 100-byte limit"):
        load_image(bomb, max_bytes=100)


@pytest.mark.parametrize("kind", ["pil", "numpy", "file"])
def test_pixel_limit_applies_to_every_kind_of_input(tmp_path, monkeypatch, kind):
    """In-memory images get the same pixel limit as files (explicit, from a policy, from the environment)."""
    from mmreact.images import ImagePolicy

    big = PILImage.new("RGB", (300, 200), (10, 20, 30))  # 60,000 pixels
    source = {"pil": big, "numpy": np.asarray(big), "file": tmp_path / "big.png"}[kind]
    if kind == "file":
        big.save(source)
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(source, max_pixels=59_999)
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(source, policy=ImagePolicy(max_pixels=50_000))
    monkeypatch.setenv("MMREACT_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(source)
    monkeypatch.delenv("MMREACT_MAX_PIXELS")
    assert load_image(source, max_pixels=60_000).size == (300, 200)


def test_handle_table_dedupes_and_validates_all_first(tiny_png, tmp_path):
    table = ImageTable()
    assert table.add_all([tiny_png, np.zeros((2, 2, 3), dtype=np.uint8), str(tiny_png)]) == ["image_1", "image_2", "image_1"]
    with pytest.raises(ImageError):
        table.add_all([np.ones((3, 3, 3), dtype=np.uint8), tmp_path / "nope.png"])
    assert table.handles == ["image_1", "image_2"]  # nothing half-added


def test_allowed_root_blocks_escapes(tmp_path):
    from mmreact.images import ImagePolicy

    root = tmp_path / "allowed"
    root.mkdir()
    inside = root / "ok.png"
    PILImage.new("RGB", (4, 4)).save(inside)
    outside = tmp_path / "secret.png"
    PILImage.new("RGB", (4, 4)).save(outside)
    (root / "link.png").symlink_to(outside)
    policy = ImagePolicy(allowed_root=str(root))
    assert load_image(inside, policy=policy).size == (4, 4)
    for escape in (root / ".." / "secret.png", root / "link.png", outside):
        with pytest.raises(ImageError, match="outside the allowed image folder"):
            load_image(escape, policy=policy)


def test_allowed_root_from_environment_applies_to_agents(tmp_path, monkeypatch):
    from mmreact import Agent, ScriptedLLM

    outside = tmp_path / "x.png"
    PILImage.new("RGB", (4, 4)).save(outside)
    (tmp_path / "root").mkdir()
    monkeypatch.setenv("MMREACT_IMAGE_ROOT", str(tmp_path / "root"))
    with pytest.raises(ImageError, match="outside the allowed image folder"):
        Agent(ScriptedLLM(["Final Answer: x"]), tools=[]).run("q", [outside])


def test_multi_frame_gif_uses_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [PILImage.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    img = load_image(path)
    assert img.to_numpy()[0, 0].tolist() == [255, 0, 0]
    assert "frame 1 of 2" in img.source


def test_non_images_are_rejected_after_ultralytics_patched_pil(tmp_path):
    """ultralytics replaces PIL.Image.open with a wrapper that tries to install pi-heif."""
    pytest.importorskip("ultralytics")
    import ultralytics.utils.patches  # noqa: F401 - applies the patch

    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(text)


def test_load_bytes_checks_like_a_file(tmp_path):
    """Bytes (a server's upload) get the same checks and normalisation as the file they came from."""
    from mmreact.images import load_bytes

    path = tmp_path / "red.png"
    PILImage.new("RGB", (8, 6), (255, 0, 0)).save(path)
    assert load_bytes(path.read_bytes(), "the upload").sha256 == load_image(path).sha256
    with pytest.raises(ImageError, match="^the upload is empty"):
        load_bytes(b"", "the upload")
    with pytest.raises(ImageError, match="^the upload is not an image file PIL can read"):
        load_bytes(b"not an image", "the upload")
    noisy = tmp_path / "noisy.png"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noisy)
    with pytest.raises(ImageError, match="^the upload is truncated or corrupt"):
        load_bytes(noisy.read_bytes()[:2000], "the upload")
    with pytest.raises(ImageError, match="over the 10-byte limit"):
        load_bytes(path.read_bytes(), "the upload", policy=ImagePolicy(max_bytes=10))

"""Image loading, validation, content hashes and the per-session handle table.

Every image is validated once, on load, and normalised to an RGB ``PIL.Image`` with EXIF
rotation applied. Inside prompts an image is only ever named by its handle (``image_1``...);
the model's tool calls name handles and :class:`ImageTable` maps them back.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from .errors import ImageError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

ImageSource = Union[str, os.PathLike, "PILImage.Image", "np.ndarray", "Image"]

#: One megabyte as every size limit is set and printed (``--max-body-mb 1``, ``MMREACT_MAX_IMAGE_MB=1``:
#: 1,000,000 bytes, printed "1 MB"): decimal, like the sizes of downloads (:func:`mmreact.weights.human_size`).
MB = 1_000_000
MAX_FILE_BYTES = 64 * MB
MAX_PIXELS = 120_000_000
HANDLE_RE = re.compile(r"^image_(\d+)$")


def megabytes(limit: int) -> str:
    """A limit in :data:`MB` as it was set: ``1 MB``, ``0.5 MB``, ``32 MB`` (``100-byte`` below 10 kB)."""
    return f"{limit:,}-byte" if limit < 10_000 else f"{limit / MB:g} MB"


def size_over(size: int, limit: int) -> str:
    """A size past ``limit``, to one decimal in MB, or in bytes where that would read as the limit."""
    return f"{size:,} bytes" if round(size / MB, 1) <= limit / MB else f"{size / MB:.1f} MB"


@dataclass(frozen=True)
class ImagePolicy:
    """Limits applied to every image on load.

    ``allowed_root``: when set, file paths must resolve (symlinks followed, ``..`` collapsed)
    inside this folder. Defaults come from ``MMREACT_IMAGE_ROOT``, ``MMREACT_MAX_IMAGE_MB`` and
    ``MMREACT_MAX_PIXELS``. Multi-frame files (GIF, TIFF, APNG): the first frame is used.
    """

    max_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS
    allowed_root: str | None = None

    @classmethod
    def from_env(cls) -> ImagePolicy:
        env = os.environ
        return cls(
            max_bytes=int(float(env.get("MMREACT_MAX_IMAGE_MB", MAX_FILE_BYTES / MB)) * MB),
            max_pixels=int(env.get("MMREACT_MAX_PIXELS", MAX_PIXELS)),
            allowed_root=env.get("MMREACT_IMAGE_ROOT") or None,
        )

    def check_path(self, path: Path) -> Path:
        if self.allowed_root is None:
            return path
        root = Path(self.allowed_root).expanduser().resolve()
        real = path.resolve()
        if not real.is_relative_to(root):
            raise ImageError(f"{path} is outside the allowed image folder {root}.")
        return real


@dataclass(frozen=True, eq=False)
class Image:
    """A validated RGB image. Tools declare a parameter of this type to receive an image."""

    pil: PILImage.Image = field(repr=False)
    sha256: str
    source: str

    @property
    def width(self) -> int:
        return self.pil.width

    @property
    def height(self) -> int:
        return self.pil.height

    @property
    def size(self) -> tuple[int, int]:
        return self.pil.size

    def to_numpy(self) -> np.ndarray:
        """The pixels as an ``H x W x 3`` uint8 RGB array."""
        import numpy as np

        return np.asarray(self.pil)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)


def _digest(pil: PILImage.Image) -> str:
    h = hashlib.sha256()
    h.update(f"{pil.mode}:{pil.width}x{pil.height}:".encode())
    h.update(pil.tobytes())
    return h.hexdigest()


def _normalise(pil: PILImage.Image) -> PILImage.Image:
    from PIL import ImageOps

    pil = ImageOps.exif_transpose(pil) or pil
    if pil.mode == "RGB":
        return pil
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        from PIL import Image as PILImageMod

        rgba = pil.convert("RGBA")
        background = PILImageMod.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np
        from PIL import Image as PILImageMod

        arr = np.asarray(pil, dtype=np.float64)
        top = arr.max() or 1.0
        return PILImageMod.fromarray((arr * (255.0 / top)).astype("uint8")).convert("RGB")
    return pil.convert("RGB")


def _pil_open(path: Path | BinaryIO) -> PILImage.Image:
    """PIL's own ``Image.open``, even when ultralytics has replaced it.

    Importing ultralytics swaps ``PIL.Image.open`` for a wrapper that, on a file PIL cannot
    identify, tries to install and import ``pi-heif`` (a network attempt, then an ImportError)
    instead of raising ``UnidentifiedImageError``.
    """
    import sys

    from PIL import Image as PILImageMod

    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None) if patches is not None else None
    return (original or PILImageMod.open)(path)


def _from_path(path: Path, max_bytes: int, max_pixels: int) -> Image:
    """Open, check and normalise one file (first frame of multi-frame files)."""
    name = str(path)
    if not path.exists():
        raise ImageError(f"No such image file: {name}")
    if path.is_dir():
        raise ImageError(f"{name} is a directory, not an image file.")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{name} is empty (0 bytes), not an image.")
    if size > max_bytes:
        raise ImageError(f"{name} is {size_over(size, max_bytes)}, over the {megabytes(max_bytes)} limit for one image.")
    return _decode(path, name, max_pixels)


def load_bytes(data: bytes, name: str, *, policy: ImagePolicy | None = None) -> Image:
    """Load and validate an image from the bytes of an image file, with the checks and the
    normalisation of a file on disk; ``name`` stands for the file in error sentences (and is the
    image's ``source``)."""
    policy = policy or ImagePolicy.from_env()
    if not data:
        raise ImageError(f"{name} is empty (0 bytes), not an image.")
    if len(data) > policy.max_bytes:
        raise ImageError(f"{name} is {size_over(len(data), policy.max_bytes)}, over the {megabytes(policy.max_bytes)} limit "
                         "for one image.")
    import io

    return _decode(io.BytesIO(data), name, policy.max_pixels)


def _decode(file: Path | BinaryIO, name: str, max_pixels: int) -> Image:
    """Open, check and normalise one image file's content (first frame of multi-frame files)."""
    import warnings

    from PIL import Image as PILImageMod
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImageMod.DecompressionBombWarning)
            probe_ctx = _pil_open(file)
        with probe_ctx as probe:
            w, h = probe.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{name} declares {w}x{h} pixels, over the {max_pixels:,} pixel limit "
                    "(possible decompression bomb)."
                )
            frames = getattr(probe, "n_frames", 1)
            if frames > 1:
                probe.seek(0)
                name = f"{name} (frame 1 of {frames})"
            probe.load()
            pil = _normalise(probe)
            pil.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file PIL can read.") from None
    except PILImageMod.DecompressionBombError:
        raise ImageError(f"{name} is too large to decode safely (decompression bomb).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name} is truncated or corrupt ({' '.join(str(exc).split())}).") from None
    return Image(pil=pil, sha256=_digest(pil), source=name)


def _from_array(arr: Any, max_pixels: int) -> Image:
    import numpy as np
    from PIL import Image as PILImageMod

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ImageError(f"A numpy image must be H x W, H x W x 3 or H x W x 4; got shape {a.shape}.")
    if a.shape[0] * a.shape[1] > max_pixels:
        raise ImageError(f"The numpy image is {a.shape[1]}x{a.shape[0]}, over the {max_pixels:,} pixel limit.")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError("A float numpy image contains NaN or infinite values.")
        a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    pil = _normalise(PILImageMod.fromarray(np.ascontiguousarray(a)))
    return Image(pil=pil, sha256=_digest(pil), source=f"<numpy {'x'.join(map(str, arr.shape))}>")


def load_image(source: ImageSource, *, policy: ImagePolicy | None = None, max_bytes: int | None = None,
               max_pixels: int | None = None) -> Image:
    """Load and validate one image from a path, a ``PIL.Image`` or a numpy array.

    Limits come from ``policy`` (default :meth:`ImagePolicy.from_env`), overridden by
    ``max_bytes``/``max_pixels`` when given.
    """
    if isinstance(source, Image):
        return source
    policy = policy or ImagePolicy.from_env()
    max_bytes = policy.max_bytes if max_bytes is None else max_bytes
    max_pixels = policy.max_pixels if max_pixels is None else max_pixels
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
            raise ImageError(f"{text} is a URL; download it and pass the local file instead.")
        return _from_path(policy.check_path(Path(text).expanduser()), max_bytes, max_pixels)
    try:
        from PIL import Image as PILImageMod
    except ImportError:  # pragma: no cover - pillow is a core dependency
        raise ImageError("Pillow is required to load images.") from None
    if isinstance(source, PILImageMod.Image):
        if source.width * source.height > max_pixels:
            raise ImageError(f"The PIL image is {source.width}x{source.height}, over the {max_pixels:,} pixel limit.")
        if source.width == 0 or source.height == 0:
            raise ImageError("The PIL image is empty (0 pixels).")
        pil = _normalise(source.copy())
        return Image(pil=pil, sha256=_digest(pil), source=f"<PIL {source.mode} {source.width}x{source.height}>")
    if hasattr(source, "__array__") or hasattr(source, "shape"):
        return _from_array(source, max_pixels)
    raise ImageError(
        f"Cannot use a {type(source).__name__} as an image; give a file path, a PIL.Image or a numpy array."
    )


class ImageTable:
    """Handles (``image_1``, ``image_2``...) for the images of one run or chat session.

    Adding the same pixels twice returns the existing handle.
    """

    def __init__(self, policy: ImagePolicy | None = None) -> None:
        self.policy = policy
        self._by_handle: dict[str, Image] = {}
        self._by_hash: dict[str, str] = {}

    def add(self, source: ImageSource) -> str:
        return self._register(load_image(source, policy=self.policy))

    def add_all(self, sources: Iterable[ImageSource]) -> list[str]:
        """Validate every image first, so one bad image adds none of them."""
        images = [load_image(s, policy=self.policy) for s in sources]
        return [self._register(image) for image in images]

    def _register(self, image: Image) -> str:
        existing = self._by_hash.get(image.sha256)
        if existing is not None:
            return existing
        handle = f"image_{len(self._by_handle) + 1}"
        self._by_handle[handle] = image
        self._by_hash[image.sha256] = handle
        return handle

    def get(self, handle: str) -> Image | None:
        return self._by_handle.get(handle)

    def truncate(self, count: int) -> None:
        """Forget every image after the first ``count`` (undo a turn that failed)."""
        for handle in list(self._by_handle)[count:]:
            image = self._by_handle.pop(handle)
            if self._by_hash.get(image.sha256) == handle:
                del self._by_hash[image.sha256]

    def __contains__(self, handle: object) -> bool:
        return handle in self._by_handle

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_handle)

    def __len__(self) -> int:
        return len(self._by_handle)

    def items(self) -> Iterator[tuple[str, Image]]:
        return iter(self._by_handle.items())

    @property
    def handles(self) -> list[str]:
        return list(self._by_handle)

"""Draw what the experts found on the image they looked at.

``annotate(image, artifacts)`` returns a new RGB ``PIL.Image`` with every box an artifact holds:
detections (``{"objects": [{"label", "confidence", "box"}]}``) with label and confidence,
dense-caption regions (``{"regions": [{"caption", "box"}]}``) with their captions, and OCR lines
(``{"lines": [{"text", "box", "confidence"}]}``) with their text, one colour per kind. A plug-in
artifact that holds a list of dicts with a ``"box"`` is drawn too, in a fourth colour, and the
boxes that support an answer (``{"answer": [{"label", "box"}]}``, :func:`support_artifact`) in a
fifth.

Decisions:
- Boxes are pixel ``[x1, y1, x2, y2]`` on the original image (the convention everywhere in
  mmreact); they are clipped to the image, and malformed or empty boxes are skipped, not raised:
  an artifact is data from a model.
- supervision (in the ``vision`` extra) draws when it is installed; PIL's ``ImageDraw`` draws
  otherwise. supervision's box annotator works on OpenCV-style BGR arrays; it is only ever given
  a PIL image here, which it converts to BGR and back itself, so colours stay RGB. Handing it
  ``Image.to_numpy()`` (RGB) would swap red and blue, which the tests check for.
- Labels use ``RichLabelAnnotator`` (PIL text, any Unicode: OCR text is not ASCII-only) rather
  than ``LabelAnnotator`` (OpenCV Hershey fonts, ASCII only).
- The input image is never modified; each call draws on a copy.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, one_line
from ..findings import Findings, as_box
from ..images import HANDLE_RE, Image, ImageSource, load_image

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ..result import Result

Kind = Literal["detect", "dense", "ocr", "other", "answer"]
Backend = Literal["auto", "supervision", "pil"]

#: RGB colour per kind of finding (red/blue never equal, so a BGR mix-up is visible).
COLOURS: dict[str, tuple[int, int, int]] = {
    "detect": (230, 25, 75),
    "dense": (0, 130, 200),
    "ocr": (60, 180, 75),
    "other": (145, 30, 180),
    "answer": (245, 130, 48),
}
MAX_LABEL = 48


@dataclass(frozen=True, slots=True)
class Drawn:
    """One box to draw: its colour group, pixel box, label text and score (if any)."""

    kind: Kind
    box: tuple[float, float, float, float]
    label: str
    confidence: float | None = None

    @property
    def caption(self) -> str:
        """The text drawn next to the box (label and confidence, shortened)."""
        text = " ".join(self.label.split())
        if self.kind == "detect" and self.confidence is not None:
            text = f"{text} {self.confidence:.2f}"
        return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def _box(value: Any, width: int, height: int) -> tuple[float, float, float, float] | None:
    """A box clipped to the image, ``None`` when it is no box or under one pixel once clipped."""
    box = as_box(value)
    if box is None:
        return None
    x1, y1, x2, y2 = box
    x1, x2 = sorted((min(max(x1, 0.0), width - 1.0), min(max(x2, 0.0), width - 1.0)))
    y1, y2 = sorted((min(max(y1, 0.0), height - 1.0), min(max(y2, 0.0), height - 1.0)))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return x1, y1, x2, y2


def _artifact_of(item: Any) -> Any:
    """An artifact from an artifact dict, a CallRecord or an Observation."""
    if isinstance(item, dict) or item is None:
        return item
    if getattr(item, "error", False):
        return None
    return getattr(item, "artifact", None)


#: a finding's kind (:mod:`mmreact.findings`) -> the colour group it is drawn in
_DRAWN_AS: dict[str, Kind] = {"object": "detect", "region": "dense", "text": "ocr", "other": "other", "answer": "answer"}


def findings(artifacts: Any, width: int, height: int) -> list[Drawn]:
    """Every drawable box in ``artifacts`` (one artifact, or an iterable of artifacts, CallRecords
    or Observations; read by :class:`mmreact.findings.Findings`), clipped to a ``width`` x
    ``height`` image, in input order."""
    items = [artifacts] if isinstance(artifacts, dict) or not isinstance(artifacts, Iterable) else list(artifacts)
    out: list[Drawn] = []
    for item in items:
        for f in Findings.from_artifact(_artifact_of(item)).boxed:
            box = _box(f.box, width, height)
            kind = _DRAWN_AS.get(f.kind)
            if box is not None and kind is not None:
                out.append(Drawn(kind, box, f.text, f.score))
    return out


def supervision_available() -> bool:
    return importlib.util.find_spec("supervision") is not None


def _quiet_import(name: str) -> Any:
    """Import ``name`` without tqdm's "IProgress not found" warning: supervision imports
    ``tqdm.auto`` at import time, and in a notebook without ipywidgets that warning is noise
    (tqdm falls back to a text bar on its own)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        return importlib.import_module(name)


def _font_path() -> str | None:
    """DejaVu Sans from matplotlib (supervision depends on it) when present, else PIL's own font."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data/fonts/ttf/DejaVuSans.ttf"
    return str(path) if path.is_file() else None


def style_for(width: int, height: int) -> tuple[int, int]:
    """(line thickness, font size) that stay readable from thumbnails to large photos."""
    longest = max(width, height)
    return max(2, round(longest / 400)), int(min(28, max(11, round(longest / 45))))


def _kinds(found: Sequence[Drawn]) -> list[str]:
    return [k for k in COLOURS if any(f.kind == k for f in found)]


def _draw_supervision(scene: PILImage.Image, found: Sequence[Drawn], thickness: int, font_size: int,
                      labels: bool) -> None:
    import numpy as np

    sv = _quiet_import("supervision")

    font = _font_path()
    pad = max(2, font_size // 4)
    for kind in _kinds(found):
        group = [f for f in found if f.kind == kind]
        scores = [f.confidence for f in group]
        det = sv.Detections(
            xyxy=np.array([f.box for f in group], dtype=np.float32).round(),
            confidence=None if None in scores else np.array(scores, dtype=np.float32),
            class_id=np.zeros(len(group), dtype=int),
            data={"class_name": np.array([f.label for f in group])},
        )
        colour = sv.Color(*COLOURS[kind])
        sv.BoxAnnotator(color=colour, thickness=thickness).annotate(scene, det)  # PIL in, PIL out (RGB)
        if labels:
            position = sv.Position.BOTTOM_LEFT if kind == "ocr" else sv.Position.TOP_LEFT
            sv.RichLabelAnnotator(
                color=colour, text_color=sv.Color.WHITE, font_path=font, font_size=font_size,
                text_padding=pad, text_position=position, smart_position=True,
            ).annotate(scene, det, labels=[f.caption for f in group])


def _draw_pil(scene: PILImage.Image, found: Sequence[Drawn], thickness: int, font_size: int,
              labels: bool) -> None:
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(scene)
    path = _font_path()
    font = ImageFont.truetype(path, font_size) if path else ImageFont.load_default(font_size)
    pad = max(2, font_size // 4)
    for kind in _kinds(found):
        colour = COLOURS[kind]
        for f in found:
            if f.kind != kind:
                continue
            x1, y1, x2, y2 = (round(v) for v in f.box)
            half = thickness // 2  # centred on the box edge, like OpenCV/supervision
            draw.rectangle((x1 - half, y1 - half, x2 + half, y2 + half), outline=colour, width=thickness)
            if not labels:
                continue
            left, top, right, bottom = draw.textbbox((0, 0), f.caption, font=font)
            w, h = right - left + 2 * pad, bottom - top + 2 * pad
            ty = y2 if kind == "ocr" else y1 - h
            ty = min(max(ty, 0), scene.height - h)
            tx = min(max(x1, 0), max(scene.width - w, 0))
            draw.rectangle((tx, ty, tx + w, ty + h), fill=colour)
            draw.text((tx + pad - left, ty + pad - top), f.caption, fill=(255, 255, 255), font=font)


def annotate(image: ImageSource, artifacts: Any, *, labels: bool = True,
             backend: Backend = "auto") -> PILImage.Image:
    """A copy of ``image`` (path, PIL, numpy, :class:`~mmreact.Image`) with every box in
    ``artifacts`` drawn: one artifact dict, or an iterable of artifacts, CallRecords or
    Observations (failed calls are skipped). ``backend`` forces supervision or PIL drawing."""
    img = load_image(image)
    scene = img.pil.copy()
    found = findings(artifacts, img.width, img.height)
    if not found:
        return scene
    thickness, font_size = style_for(img.width, img.height)
    use_sv = backend == "supervision" or (backend == "auto" and supervision_available())
    if backend == "supervision" and not supervision_available():
        raise ConfigError("Drawing with supervision needs it installed: pip install 'mmreact[vision]'.")
    (_draw_supervision if use_sv else _draw_pil)(scene, found, thickness, font_size, labels)
    return scene


def calls_for(result: Result, handle: str) -> list[Any]:
    """The successful calls in ``result`` that looked at image ``handle`` alone (a call naming two
    images has boxes on both, so it is left out), each distinct call once."""
    seen: set[str] = set()
    out = []
    for call in result.trace.calls:
        named = {v for v in call.args.values() if isinstance(v, str) and HANDLE_RE.match(v)}
        if call.error or named != {handle} or call.call in seen:
            continue
        seen.add(call.call)
        out.append(call)
    return out


def _pick(images: dict[str, Image], handle: str | None) -> str:
    if not images:
        raise ConfigError("This result has no images to annotate.")
    if handle is None:
        return next(iter(images))
    if handle not in images:
        raise ConfigError(f"No image '{handle}' in this result; images: {', '.join(images)}.")
    return handle


def support_artifact(result: Result, handle: str) -> dict[str, Any]:
    """The boxes on image ``handle`` that support the answer's facts (see :mod:`mmreact.grounding`),
    as an artifact ``{"answer": [{"label": fact, "box": ...}]}`` (one entry per supporting box)."""
    check = result.trace.grounding
    entries: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for fact in check.facts if check is not None else ():
        e = fact.evidence
        if not fact.supported or e is None or e.box is None or e.image != handle:
            continue
        key = (fact.text, *e.box)
        if key not in seen:
            seen.add(key)
            entries.append({"label": fact.text, "box": list(e.box)})
    return {"answer": entries}


def annotate_result(result: Result, handle: str | None = None, *, labels: bool = True,
                    backend: Backend = "auto", grounding: bool = False) -> PILImage.Image:
    """Image ``handle`` of a :class:`~mmreact.result.Result` (default: the first) with every box
    that this run's calls found on it; with ``grounding``, only the boxes that support the answer's
    facts, each labelled with its fact."""
    handle = _pick(result.images, handle)
    arts = [support_artifact(result, handle)] if grounding else calls_for(result, handle)
    return annotate(result.images[handle], arts, labels=labels, backend=backend)


def annotate_many(items: Iterable[tuple[ImageSource, Any]], *, labels: bool = True, backend: Backend = "auto",
                  progress: bool | None = None) -> list[PILImage.Image]:
    """:func:`annotate` over ``(image, artifacts)`` pairs, with a progress bar (``tqdm.auto``) when
    ``progress`` is true, or by default when there are 8 or more images."""
    tqdm = _quiet_import("tqdm.auto").tqdm
    pairs = list(items)
    show = progress if progress is not None else len(pairs) >= 8
    return [annotate(image, arts, labels=labels, backend=backend)
            for image, arts in tqdm(pairs, desc="annotating", unit="image", disable=not show)]


def save_annotated(result: Result, path: str | Path, handle: str | None = None) -> Path:
    """Write image ``handle`` (default: the first) of ``result``, annotated, to ``path``; the
    format follows the file extension (PNG when there is none). Returns the path."""
    out = Path(path).expanduser()
    image = annotate_result(result, handle)
    save_image(image, out)
    return out


def image_format(path: str | Path) -> str:
    """The PIL format to write ``path`` in (PNG when it has no extension), checked before any work
    is done: an unknown extension or a missing folder raises :class:`ConfigError`."""
    from PIL import Image as PILImageMod

    p = Path(path).expanduser()
    known = PILImageMod.registered_extensions()  # also loads the plug-ins that fill PILImageMod.SAVE
    fmt = known.get(p.suffix.lower()) if p.suffix else "PNG"
    if fmt is None or fmt not in PILImageMod.SAVE:
        raise ConfigError(f"Cannot save an image as '{p.suffix}'; use .png or .jpg.")
    if not p.parent.is_dir():
        raise ConfigError(f"Cannot write {p}: the folder {p.parent} does not exist.")
    return fmt


def save_image(image: PILImage.Image, path: str | Path) -> None:
    """Save with the format the extension names (PNG without one); one-sentence errors."""
    p = Path(path).expanduser()
    fmt = image_format(p)
    try:
        image.save(p, format=fmt)
    except OSError as exc:
        raise ConfigError(f"Cannot write {p}: {exc.strerror or one_line(exc)}.") from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"Cannot write {p} as {fmt}: {one_line(exc)}.") from None

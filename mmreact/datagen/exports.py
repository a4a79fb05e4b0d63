"""Training files from a run's accepted records: LLaVA, ShareGPT (LLaMA-Factory) and OpenAI.

- ``llava``: LLaVA's ``llava_instruct_150k.json`` layout, one JSON array of
  ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}``; ``<image>\\n``
  starts the first human turn; ``image`` is relative to the image folder (LLaVA's
  ``--image_folder``).
- ``sharegpt``: LLaMA-Factory's ShareGPT layout, ``{"conversations": [...], "images": [path]}``,
  with a ``dataset_info.json`` entry next to it (``formatting: sharegpt``, ``columns: {messages:
  conversations, images: images}``); set LLaMA-Factory's ``media_dir`` to the image folder.
- ``openai``: JSONL of ``{"messages": [...]}`` for OpenAI's vision fine-tuning; every message's
  content is a list of parts (the image as a base64 ``data:`` URL in the first user message, or
  its path with ``image_url="path"``), so all rows share one schema.

Rejected and error records are skipped; each id is exported once. Rows are ordered by image path
and kind, so both engines export the same file.
Every conversation is checked before it is written: it starts with a human turn, turns alternate,
and exactly one ``<image>`` appears, at the start.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .records import Record
from .store import Store

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

    def line(self) -> str:
        return (f"wrote {self.written} conversations to {self.path} ({self.rejected} rejected and {self.errors} "
                f"error records skipped)")


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


def _data_url(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read the image {path} for the export ({exc.strerror or exc}).") from None
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


def export(out: str | Path, fmt: str = "llava", dest: str | Path | None = None, *,
           kinds: list[str] | None = None, image_prefix: str | None = None, image_url: str = "base64",
           images_dir: str | Path | None = None) -> ExportSummary:
    """Write the accepted records of the run in ``out`` as ``fmt`` (see the module notes).

    Args:
        dest: the file to write (default: ``OUT/<fmt>.json``, ``OUT/openai.jsonl``).
        kinds: only these kinds.
        image_prefix: put this folder in front of every image path (default: paths relative
            to the image folder).
        image_url: ``openai`` only: ``base64`` (a data URL) or ``path``.
        images_dir: where the images are (default: the folder the run read them from).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format '{fmt}'; use {', '.join(FORMATS)}.")
    if image_url not in ("base64", "path"):
        raise ConfigError(f"image_url must be base64 or path, got '{image_url}'.")
    store = Store.existing(out)
    root = Path(images_dir or store.run_info().get("images_dir") or ".").expanduser()
    # By image and kind: the same file whichever engine (and worker order) wrote the store.
    records = sorted(store.records(), key=lambda r: (r.image, r.kind, r.id))
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    rejected = errors = repeated = invalid = 0
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
            info = {"mmreact_datagen": {"file_name": target.name, "formatting": "sharegpt",
                                        "columns": {"messages": "conversations", "images": "images"}}}
            (target.parent / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot write {target} ({exc.strerror or exc}).") from None
    return ExportSummary(str(target), fmt, len(rows), rejected, errors, repeated, invalid)

"""A user's own labels as the context, instead of (or besides) the experts' outputs.

Two formats, recognised by content:

- JSONL, one image per line: ``{"image": "path/relative/to/the/folder.jpg", "captions": [...],
  "objects": [{"label": "dog", "box": [x1, y1, x2, y2]}], "ocr": [...], "tags": [...]}`` with
  ``box`` in pixels, or ``box_norm`` already in 0-1;
- COCO JSON: an instances file (``images``, ``annotations`` with ``bbox`` ``[x, y, w, h]`` in
  pixels and ``category_id``, ``categories``) and/or a captions file (``annotations`` with
  ``caption``). Several files are merged by image.

Images are matched by their path relative to the image folder, else by file name (COCO keeps
bare file names).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .context import Context, ContextObject, normalise_box

__all__ = ["load_annotations", "annotation_context", "lookup"]


def _entry(table: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return table.setdefault(name, {"captions": [], "objects": [], "ocr": [], "tags": []})


def _coco(data: Mapping[str, Any], path: Path, table: dict[str, dict[str, Any]]) -> None:
    images = {im["id"]: im["file_name"] for im in data.get("images") or () if "id" in im and "file_name" in im}
    cats = {c["id"]: c["name"] for c in data.get("categories") or () if "id" in c and "name" in c}
    for a in data.get("annotations") or ():
        name = images.get(a.get("image_id"))
        if name is None:
            continue
        e = _entry(table, name)
        if isinstance(a.get("caption"), str):
            e["captions"].append(a["caption"].strip())
        bbox = a.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and a.get("category_id") in cats:
            x, y, w, h = (float(v) for v in bbox)
            e["objects"].append({"label": cats[a["category_id"]], "box": [x, y, x + w, y + h]})
    if not images:
        raise ConfigError(f"{path} looks like COCO JSON but has no 'images' list.")


def _jsonl(text: str, path: Path, table: dict[str, dict[str, Any]]) -> None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}, line {lineno}: not valid JSON ({exc.msg}).") from None
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise ConfigError(f"{path}, line {lineno}: each line needs an \"image\" path.")
        e = _entry(table, item["image"].replace("\\", "/"))
        for key in ("captions", "ocr", "tags"):
            value = item.get(key) or []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}, line {lineno}: \"{key}\" must be a list of strings.")
            e[key] += [v.strip() for v in value if v.strip()]
        for o in item.get("objects") or []:
            box = o.get("box", o.get("box_norm")) if isinstance(o, dict) else None
            if not isinstance(o, dict) or not isinstance(o.get("label"), str) or not isinstance(box, list) \
                    or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
                raise ConfigError(f"{path}, line {lineno}: each object needs a \"label\" and a \"box\" of 4 numbers.")
            e["objects"].append({"label": o["label"], ("box" if "box" in o else "box_norm"): [float(v) for v in box]})


def load_annotations(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """Image path -> ``{"captions", "objects", "ocr", "tags"}`` from every file, merged."""
    table: dict[str, dict[str, Any]] = {}
    for p in paths:
        path = Path(p).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"No annotation file at {path}.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read the annotation file {path} ({exc}).") from None
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSONL (or broken: the line-by-line reader says where)
        if isinstance(whole, dict) and "annotations" in whole:
            _coco(whole, path, table)
            continue
        _jsonl(text, path, table)
    if not table:
        raise ConfigError("The annotation files hold no image.")
    return table


def lookup(table: Mapping[str, Mapping[str, Any]], image: str) -> Mapping[str, Any] | None:
    """The annotations of ``image`` (a relative path), by path, else by file name."""
    found = table.get(image)
    if found is None:
        found = table.get(image.rsplit("/", 1)[-1])
    return found


def annotation_context(entry: Mapping[str, Any], width: int, height: int) -> Context:
    """A context from one image's annotations (pixel boxes normalised with the image's size)."""
    objects = []
    for o in entry.get("objects") or ():
        box = normalise_box(o["box"], width, height) if "box" in o else \
            tuple(round(min(max(float(v), 0.0), 1.0), 3) for v in o["box_norm"])
        objects.append(ContextObject(str(o["label"]), box, "annotation"))  # type: ignore[arg-type]
    return Context(width=width, height=height, captions=tuple(entry.get("captions") or ()),
                   objects=tuple(objects), ocr=tuple(entry.get("ocr") or ()), tags=tuple(entry.get("tags") or ()),
                   detected=bool(objects), sources=("annotations",))

"""MultiInstruct-style instructions from labelled data, no LLM: several hand-written templates per
task, one picked per item by a seed; answer options appended as ``[Options]: a||||b``.

Labels come from a JSONL file, one item per line, ``image`` relative to the image folder::

    {"image": "a.jpg", "task": "vqa", "question": "What colour is the car?", "answer": "red",
     "options": ["red", "blue"]}
    {"image": "a.jpg", "task": "caption", "caption": "A red car parked on a street."}
    {"image": "a.jpg", "task": "grounding", "label": "car", "box": [10, 20, 200, 120]}
    {"image": "a.jpg", "task": "region", "box": [10, 20, 200, 120], "caption": "a red car"}
    {"image": "a.jpg", "task": "count", "label": "car", "count": 2}
    {"image": "a.jpg", "task": "ocr", "text": "EXIT 24"}
    {"image": "a.jpg", "task": "objects", "labels": ["car", "person"]}

(boxes in pixels), or from the contexts a datagen run stored (the experts' outputs as weak
labels: captions, detections and their counts, OCR text).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._hashing import digest
from ..errors import ConfigError, ImageError
from ..grounding.vocab import plural
from ..qa import jsonl_records
from ._store import Store
from .context import Context, normalise_box
from .records import Record, error_id

__all__ = ["TEMPLATES", "TASKS", "instruction", "items_from_file", "items_from_run", "make_templates"]

TEMPLATES: dict[str, tuple[str, ...]] = {
    "vqa": (
        "{question}",
        "Look at the image and answer the question: {question}",
        "Answer this question about the picture. {question}",
        "{question} Base your answer on what the image shows.",
        "Question about the image: {question} Give a short answer.",
    ),
    "caption": (
        "Write a one-sentence caption for this image.",
        "Describe the image briefly.",
        "What does this picture show? Answer in one sentence.",
        "Give a short description of the scene.",
        "Summarise the content of the image in a sentence.",
    ),
    "grounding": (
        "Where is the {label} in the image? Give its box as [x1, y1, x2, y2], fractions of the width and height.",
        "Locate the {label}. Reply with the normalised box [x1, y1, x2, y2].",
        "Find the {label} in the picture and give the box around it (x1, y1, x2, y2 from 0 to 1).",
        "Give the bounding box of the {label}, with coordinates between 0 and 1.",
        "Which region holds the {label}? Answer with [x1, y1, x2, y2] in image fractions.",
    ),
    "region": (
        "What is in the region {box} of the image (x1, y1, x2, y2 as fractions)?",
        "Describe the area {box} of the picture in a few words.",
        "Name what you see inside the box {box}.",
        "Give a short caption for the region {box}.",
        "What does the part of the image at {box} show?",
    ),
    "count": (
        "How many {labels} are there in the image?",
        "Count the {labels} in this picture.",
        "What is the number of {labels} visible?",
        "How many {labels} can you see? Answer with a number.",
        "Tell me how many {labels} the image contains.",
    ),
    "ocr": (
        "What does the text in the image say?",
        "Read the text in this picture.",
        "Transcribe the words written in the image.",
        "What is written here? Copy the text.",
        "Read out all the text you can see in the image.",
    ),
    "objects": (
        "List the objects in this image.",
        "What objects can you see in the picture? Name them.",
        "Name the things that appear in this image.",
        "Which objects does this photo contain?",
        "Give a list of the objects present in the image.",
    ),
}
TASKS = tuple(TEMPLATES)
TEMPLATE_VERSION = digest(TEMPLATES, 12)


#: The key under which :func:`items_from_file` notes where an item came from ("labels.jsonl, line 3");
#: left out of the item's id, so editing other lines of the file changes no record.
WHERE = "_where"


def _box_text(box: Iterable[float]) -> str:
    return "[" + ", ".join(repr(round(float(v), 3)) for v in box) + "]"


def instruction(item: Mapping[str, Any], width: int, height: int, *, seed: int = 0, key: str = "") -> tuple[str, str]:
    """(instruction, answer) for one labelled item; the template is picked by ``seed`` and ``key``."""
    task = item.get("task")
    if task not in TEMPLATES:
        raise ConfigError(f"Unknown template task {task!r}; use {', '.join(TASKS)}.")
    template = random.Random(f"{seed}:{key}").choice(TEMPLATES[task])

    def need(name: str, kind: type | tuple[type, ...] = str) -> Any:
        value = item.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ConfigError(f"A {task} item needs \"{name}\".")
        if not isinstance(value, kind) or isinstance(value, bool):
            wanted = {str: "a string", int: "a whole number", list: "a list"}.get(kind, "a string or a number") \
                if isinstance(kind, type) else "a string or a number"
            raise ConfigError(f"\"{name}\" of a {task} item must be {wanted}, got {json.dumps(value)}.")
        return value

    def box(name: str = "box") -> tuple[float, float, float, float]:
        value = need(name, list)
        if len(value) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"\"{name}\" of a {task} item must be 4 numbers [x1, y1, x2, y2] in pixels, "
                              f"got {json.dumps(value)}.")
        x1, y1, x2, y2 = (float(v) for v in value)
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise ConfigError(f"The box {json.dumps(value)} of a {task} item is not inside the {width}x{height} "
                              "image (x1 < x2 and y1 < y2, in pixels).")
        return normalise_box(value, width, height)

    options = item.get("options")
    if task == "vqa":
        text, answer = template.format(question=need("question").strip()), str(need("answer", (str, int, float)))
    elif task == "caption":
        text, answer = template, need("caption").strip()
    elif task == "grounding":
        text, answer = template.format(label=need("label").strip()), _box_text(box())
    elif task == "region":
        region = box()
        text, answer = template.format(box=_box_text(region)), str(item.get("caption") or need("label")).strip()
    elif task == "count":
        count = need("count", int)
        if count < 0:
            raise ConfigError(f"\"count\" of a count item must be 0 or more, got {count}.")
        text, answer = template.format(labels=plural(need("label").strip())), str(count)
    elif task == "ocr":
        text, answer = template, need("text").strip()
    else:
        labels = need("labels", list)
        text, answer = template, ", ".join(str(x) for x in dict.fromkeys(labels))
    if options:
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ConfigError(f"\"options\" of a {task} item must be a list of strings.")
        if answer not in options:
            raise ConfigError(f"The answer '{answer}' is not one of the options {options}.")
        text += "\n[Options]: " + "||||".join(options)
    return text, answer


def items_from_file(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"No labels file at {p}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the labels file {p} ({exc}).") from None

    def item(data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("image"), str) or data.get("task") not in TEMPLATES:
            raise ConfigError(f"{where}: each line needs an \"image\" and a \"task\" ({', '.join(TASKS)}).")
        return {**data, WHERE: where}

    return jsonl_records(p, text, item, "labelled items")


def items_from_run(run: str | Path, max_objects: int = 3) -> tuple[list[dict[str, Any]], str | None]:
    """Weak labels from the contexts a datagen run stored, and the image folder it read."""
    store = Store.existing(run)
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in store.records():
        if r.status == "error" or not r.context or r.image in seen:
            continue
        seen.add(r.image)
        ctx = Context.from_dict(r.context)
        w, h = ctx.width, ctx.height
        if ctx.captions:
            items.append({"image": r.image, "task": "caption", "caption": ctx.captions[0]})
        dets = [o for o in ctx.objects if o.source in ("detect", "annotation")]
        for o in [o for o in dets if o.box[0] < o.box[2] and o.box[1] < o.box[3]][:max_objects]:
            items.append({"image": r.image, "task": "grounding", "label": o.label,
                          "box": [o.box[0] * w, o.box[1] * h, o.box[2] * w, o.box[3] * h]})
        if ctx.detected:
            for label, n in Counter(o.label for o in dets).items():
                items.append({"image": r.image, "task": "count", "label": label, "count": n})
        if dets:
            items.append({"image": r.image, "task": "objects", "labels": [o.label for o in dets]})
        if ctx.ocr:
            items.append({"image": r.image, "task": "ocr", "text": "\n".join(ctx.ocr)})
    return items, store.run_info().get("images_dir")


def make_templates(items: list[dict[str, Any]], images_dir: str | Path, out: str | Path, *, seed: int = 0,
                   labels_digest: str = "") -> tuple[int, int]:
    """Write one record per item into the store ``out``; returns (written, already there)."""
    from ..images import load_image
    from .filters import apply_filters

    root = Path(images_dir).expanduser()
    fingerprint = {"kinds": ["template"], "tools": [], "llm": "none", "cleanup": False,
                   "prompts": {"templates": TEMPLATE_VERSION}, "reply_format": "template",
                   "annotations": [labels_digest], "context": {}, "max_pairs": None, "seed": seed}
    fp_id = digest(fingerprint, 12)
    written = skipped = 0
    cache: dict[str, Any] = {}
    with Store.open(out, fingerprint, images_dir=root) as store:
        done, _ = store.progress()
        for item in items:
            where = item.get(WHERE)
            item = {k: v for k, v in item.items() if k != WHERE}
            rel = item["image"].replace("\\", "/")
            key = digest(item, 8)
            kind = f"template-{item['task']}"
            if rel not in cache:
                try:
                    cache[rel] = load_image(root / rel)
                except ImageError as exc:
                    cache[rel] = exc
            img = cache[rel]
            if isinstance(img, ImageError):
                rid = error_id(rel, f"{kind}-{key}")
                if (rid, rel) not in done:
                    store.append(Record(id=rid, image=rel, kind=kind, status="error", error=str(img), config=fp_id))
                    written += 1
                continue
            rid = f"{img.sha256[:16]}-{kind}-{key}"
            if (rid, rel) in done:
                skipped += 1
                continue
            try:
                text, answer = instruction(item, img.width, img.height, seed=seed, key=rid)
            except ConfigError as exc:
                raise ConfigError(f"{where or rel}: {exc}") from None
            record = Record(id=rid, image=rel, kind=kind, image_sha256=img.sha256, width=img.width,
                            height=img.height, pairs=({"question": text, "answer": answer},), config=fp_id)
            store.append(apply_filters(record))
            done.add((rid, rel))
            written += 1
    return written, skipped

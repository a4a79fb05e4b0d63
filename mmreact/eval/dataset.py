"""Evaluation items: the JSONL format, MM-Vet's release layout, and validation.

JSONL format (one JSON object per line; blank lines are ignored)::

    {"id": "coins-count", "images": ["photos/coins.png"], "question": "How many coins are there?",
     "answers": ["24"], "capabilities": ["rec", "math"], "scorer": "numeric"}

- ``id`` (string, unique in the file): names the item in results and reports.
- ``images`` (list of strings, may be empty): image paths relative to the JSONL file (absolute
  paths also work). Every file must exist when the set is loaded.
- ``question`` (non-empty string).
- ``answers`` (non-empty list of strings): acceptable answers; matching ANY one is right. Inside
  one answer, ``<AND>`` joins parts that must ALL be present (MM-Vet's convention; partial
  credit is the fraction present). A single string is accepted as a one-answer list.
- ``capabilities`` (list of strings): MM-Vet's tags ``rec`` (recognition), ``ocr``, ``spat``
  (spatial awareness), ``math``, ``know`` (knowledge), ``gen`` (language generation), or any
  other short tag. Long names (``recognition``, ``spatial``, ``knowledge``...) are mapped to the
  short ones so reports group them together.
- ``scorer`` (optional): ``default``, ``exact``, ``contains``, ``numeric[:TOL]``, ``choice`` or
  ``judge:LLMSPEC`` (see :mod:`mmreact.eval.scorers`). ``mmreact eval --scorer`` overrides it.
- ``choices`` (optional list of strings): the item's options, for multiple-choice and either/or
  questions ("Is it to the left or to the right?" -> ``["left", "right"]``). The ``choice``
  scorer letters them A, B, C... in order; every rule-based scorer gives 0 to a prediction that
  names an option the answers do not name. Without it, options are read from ``(A) ...`` in the
  question, and yes/no answers imply the options yes and no. They are not shown to the system
  (write them into the question for that).

MM-Vet's own release loads directly: pass its folder (holding ``mm-vet.json`` and ``images/``)
or the path of ``mm-vet.json``. That file maps an id to ``{"imagename", "capability",
"question", "answer"}``; ``<OR>`` in an answer separates alternatives and becomes several
``answers``.

Every validation error is one sentence naming the file and line (or MM-Vet id), raised as
:class:`mmreact.errors.ConfigError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..qa import (  # noqa: F401
    CAPABILITY_ALIASES,
    KNOWN_CAPABILITIES,
    SAMPLE_PACKAGES,
    QAItem,
    item_from_dict,
    jsonl_records,
    package_folder,
    read_text,
)
from .builtin import ITEMS_FILE

#: An eval item is the core's question/answer record (:class:`mmreact.qa.QAItem`).
EvalItem = QAItem


def _item(data: Any, where: str, base: Path, roots: Mapping[str, Path] | None = None) -> EvalItem:
    from .scorers import check_scorer_name

    return item_from_dict(data, where, base, roots, check_scorer=check_scorer_name)

def load_jsonl(path: str | Path, *, roots: Mapping[str, Path] | None = None) -> list[EvalItem]:
    """Load and validate a JSONL eval set.

    ``roots`` maps an image prefix to a folder (``{"skimage": Path(...)}`` makes
    ``"skimage:coins.png"`` mean that folder's ``coins.png``); the built-in set uses it to find
    photographs inside installed packages.
    """
    p = Path(path).expanduser()
    return jsonl_records(p, read_text(p), lambda data, where: _item(data, where, p.parent, roots), "items")


def load_builtin() -> list[EvalItem]:
    """The built-in items (:mod:`mmreact.eval.builtin`) with absolute image paths (raises if a
    sample image is missing)."""
    roots = {prefix: package_folder(prefix) for prefix in SAMPLE_PACKAGES}
    return load_jsonl(ITEMS_FILE, roots=roots)


def load_mmvet(path: str | Path) -> list[EvalItem]:
    """Load MM-Vet's release: its folder or its ``mm-vet.json`` (images in ``images/`` beside it)."""
    p = Path(path).expanduser()
    json_path = p / "mm-vet.json" if p.is_dir() else p
    text = read_text(json_path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{json_path}, line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{json_path} must hold a JSON object mapping ids to MM-Vet entries.")
    image_dir = json_path.parent / "images"
    if not image_dir.is_dir():
        raise ConfigError(f"{json_path}: MM-Vet's images/ folder is missing (looked for {image_dir}).")
    items = []
    for key, entry in data.items():
        where = f"{json_path}, id '{key}'"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with imagename, capability, question and answer.")
        for field in ("imagename", "question", "answer"):
            if not isinstance(entry.get(field), str) or not entry[field].strip():
                raise ConfigError(f"{where}: '{field}' must be a non-empty string.")
        answers = [a.strip() for a in entry["answer"].split("<OR>") if a.strip()]
        items.append(_item(
            {"id": key, "images": [entry["imagename"]], "question": entry["question"], "answers": answers,
             "capabilities": entry.get("capability", [])},
            where, image_dir,
        ))
    return items


def load_dataset(spec: str | Path) -> list[EvalItem]:
    """``"builtin"``, a JSONL file, an MM-Vet folder or an ``mm-vet.json`` path -> items."""
    text = str(spec)
    if text == "builtin":
        return load_builtin()
    p = Path(text).expanduser()
    if p.is_dir() or p.suffix.lower() == ".json":
        return load_mmvet(p)
    if not p.exists():
        raise ConfigError(f"Eval set not found: {p} (give a JSONL file, an MM-Vet folder or 'builtin').")
    return load_jsonl(p)


def select(items: Sequence[EvalItem], limit: int | None = None) -> list[EvalItem]:
    """The first ``limit`` items (all when ``None``)."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}.")
    return list(items if limit is None else items[:limit])

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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")

#: Long capability names -> MM-Vet's short tags.
CAPABILITY_ALIASES: dict[str, str] = {
    "recognition": "rec", "recognize": "rec", "ocr": "ocr", "spatial": "spat", "spatial awareness": "spat",
    "spatial_awareness": "spat", "mathematics": "math", "maths": "math", "knowledge": "know",
    "generation": "gen", "language generation": "gen", "language_generation": "gen",
}
KNOWN_CAPABILITIES = ("rec", "ocr", "spat", "math", "know", "gen")
_FIELDS = {"id", "images", "question", "answers", "capabilities", "scorer", "choices"}
_TAG_RE = re.compile(r"^[a-z][a-z0-9_\- ]{0,31}$")


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One question with its images (absolute paths) and acceptable answers."""

    id: str
    question: str
    answers: tuple[str, ...]
    images: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    scorer: str | None = None
    choices: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _capability(tag: str) -> str:
    t = " ".join(tag.strip().lower().split())
    return CAPABILITY_ALIASES.get(t, t)


def _strings(value: Any, field: str, where: str, *, allow_empty: bool, one_string_ok: bool = False) -> tuple[str, ...]:
    if one_string_ok and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{field}' must be a list of strings.")
    if not allow_empty and not [v for v in value if v.strip()]:
        raise ConfigError(f"{where}: '{field}' must hold at least one non-empty string.")
    return tuple(v for v in value if v.strip())


def _resolve_image(name: str, base: Path, roots: Mapping[str, Path], where: str) -> str:
    prefix, sep, rest = name.partition(":")
    if sep and prefix in roots:
        path = roots[prefix] / rest
    else:
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = base / path
    if not path.is_file():
        raise ConfigError(f"{where}: image '{name}' does not exist (looked for {path}).")
    return str(path.resolve())


def item_from_dict(data: Any, where: str, base: Path, roots: Mapping[str, Path] | None = None) -> EvalItem:
    """Validate one JSON object as an :class:`EvalItem`; ``where`` names the file and line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}.")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field '{unknown[0]}' (fields: {', '.join(sorted(_FIELDS))}).")
    for key in ("id", "question", "answers"):
        if key not in data:
            raise ConfigError(f"{where}: missing required field '{key}'.")
    item_id = data["id"]
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip():
        raise ConfigError(f"{where}: 'id' must be a non-empty string.")
    question = data["question"]
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"{where}: 'question' must be a non-empty string.")
    answers = _strings(data["answers"], "answers", where, allow_empty=False, one_string_ok=True)
    images = _strings(data.get("images", []), "images", where, allow_empty=True, one_string_ok=True)
    caps = []
    for tag in _strings(data.get("capabilities", []), "capabilities", where, allow_empty=True, one_string_ok=True):
        cap = _capability(tag)
        if not _TAG_RE.match(cap):
            raise ConfigError(f"{where}: capability '{tag}' is not a short tag like rec, ocr, spat, math, know, gen.")
        if cap not in caps:
            caps.append(cap)
    scorer = data.get("scorer")
    if scorer is not None:
        from .scorers import check_scorer_name

        if not isinstance(scorer, str):
            raise ConfigError(f"{where}: 'scorer' must be a string.")
        problem = check_scorer_name(scorer)
        if problem:
            raise ConfigError(f"{where}: {problem}")
    choices = _strings(data.get("choices", []), "choices", where, allow_empty=True)
    resolved = tuple(_resolve_image(name, base, roots or {}, where) for name in images)
    return EvalItem(id=item_id.strip(), question=question.strip(), answers=answers, images=resolved,
                    capabilities=tuple(caps), scorer=scorer, choices=choices)


def load_jsonl(path: str | Path, *, roots: Mapping[str, Path] | None = None) -> list[EvalItem]:
    """Load and validate a JSONL eval set.

    ``roots`` maps an image prefix to a folder (``{"skimage": Path(...)}`` makes
    ``"skimage:coins.png"`` mean that folder's ``coins.png``); the built-in set uses it to find
    photographs inside installed packages.
    """
    p = Path(path).expanduser()
    return jsonl_records(p, read_text(p), lambda data, where: item_from_dict(data, where, p.parent, roots), "items")


def jsonl_records(path: Path, text: str, make: Callable[[Any, str], T], what: str) -> list[T]:
    """One record per non-empty line of ``text`` (the file ``path``), made by ``make(data, where)``;
    ``where`` names the line in errors, and ids (a record's ``id``) must be unique."""
    out: list[T] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        record = make(data, where)
        rid = str(getattr(record, "id", "") or "")
        if rid and rid in seen:
            raise ConfigError(f"{where}: id '{rid}' is already used on line {seen[rid]}.")
        seen[rid] = lineno
        out.append(record)
    if not out:
        raise ConfigError(f"{path} holds no {what} (expected one JSON object per line).")
    return out


def read_text(p: Path, *, what: str = "eval set",
              folder: str = "a folder without mm-vet.json; give a JSONL file or an MM-Vet folder",
              form: str = "an eval set must be JSONL or MM-Vet's mm-vet.json") -> str:
    """A data file's text, or :class:`ConfigError` with one sentence (``what`` names the file's
    role; ``folder`` and ``form`` end the sentences for a folder and for text that is not UTF-8)."""
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what[0].upper()}{what[1:]} not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(f"{p} is {folder}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not UTF-8 text; {form}.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {what} {p}: {exc.strerror or exc}.") from None


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
        items.append(item_from_dict(
            {"id": key, "images": [entry["imagename"]], "question": entry["question"], "answers": answers,
             "capabilities": entry.get("capability", [])},
            where, image_dir,
        ))
    return items


def load_dataset(spec: str | Path) -> list[EvalItem]:
    """``"builtin"``, a JSONL file, an MM-Vet folder or an ``mm-vet.json`` path -> items."""
    text = str(spec)
    if text == "builtin":
        from .builtin import load_builtin

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

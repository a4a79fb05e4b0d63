"""A question about images and its acceptable answers: the record that eval sets and solved
examples share, read from JSONL files.

This is the core's own data format (below :mod:`mmreact.agent`, :mod:`mmreact.fewshot` and
:mod:`mmreact.eval`, which all read it); the JSONL layout is documented in
:mod:`mmreact.eval.dataset`. Image names may point into installed packages' sample images:
``skimage:NAME`` and ``matplotlib:NAME`` (:data:`SAMPLE_PACKAGES`, found without importing them).
Every validation error is one sentence naming the file and line, raised as
:class:`mmreact.errors.ConfigError`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["CAPABILITY_ALIASES", "KNOWN_CAPABILITIES", "QAItem", "SAMPLE_PACKAGES", "SampleRoots", "item_from_dict",
           "jsonl_records", "package_folder", "read_text"]

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
class QAItem:
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


def item_from_dict(data: Any, where: str, base: Path, roots: Mapping[str, Path] | None = None, *,
                   check_scorer: Callable[[str], str | None] | None = None) -> QAItem:
    """Validate one JSON object as a :class:`QAItem`; ``where`` names the file and line.
    ``check_scorer`` says what is wrong with a scorer name (``None``: nothing); without it a
    scorer name is only checked to be a string (eval passes :func:`mmreact.eval.scorers.check_scorer_name`)."""
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
        if not isinstance(scorer, str):
            raise ConfigError(f"{where}: 'scorer' must be a string.")
        problem = check_scorer(scorer) if check_scorer is not None else None
        if problem:
            raise ConfigError(f"{where}: {problem}")
    choices = _strings(data.get("choices", []), "choices", where, allow_empty=True)
    resolved = tuple(_resolve_image(name, base, roots or {}, where) for name in images)
    return QAItem(id=item_id.strip(), question=question.strip(), answers=answers, images=resolved,
                    capabilities=tuple(caps), scorer=scorer, choices=choices)


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


#: image-name prefix -> (distribution, folder of sample images inside the package)
SAMPLE_PACKAGES = {"skimage": ("scikit-image", "data"), "matplotlib": ("matplotlib", "mpl-data/sample_data")}


def package_folder(prefix: str) -> Path:
    """The folder of sample images inside an installed package (``skimage`` or ``matplotlib``)."""
    dist, sub = SAMPLE_PACKAGES[prefix]
    spec = importlib.util.find_spec(prefix)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError(f"Images named {prefix}:... are {dist}'s sample images; pip install {dist}.")
    return Path(locations[0]) / sub


class SampleRoots(Mapping[str, Path]):
    """``skimage:NAME`` / ``matplotlib:NAME`` image names, each package found only when used."""

    def __getitem__(self, key: str) -> Path:
        if key not in SAMPLE_PACKAGES:
            raise KeyError(key)
        return package_folder(key)

    def __contains__(self, key: object) -> bool:
        return key in SAMPLE_PACKAGES

    def __iter__(self) -> Iterator[str]:
        return iter(SAMPLE_PACKAGES)

    def __len__(self) -> int:
        return len(SAMPLE_PACKAGES)

"""What a data generation run is made of, and its fingerprint (a resumed run must match it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .context import ContextOptions
from .prompts import KINDS, check_kinds

__all__ = ["DatagenConfig", "Price", "DEFAULT_EXPERTS", "parse_price"]

#: The experts a run uses when none are named: those of these that can run on this machine.
DEFAULT_EXPERTS = ("caption", "dense_caption", "detect", "ocr")


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million prompt (input) and completion (output) tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


def parse_price(text: str) -> Price:
    """``"0.15,0.60"`` -> :class:`Price` (dollars per million input, output tokens)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or any(v < 0 for v in values):
        raise ConfigError(f"--price takes dollars per million input and output tokens, e.g. 0.15,0.60; got '{text}'.")
    return Price(values[0], values[1])


@dataclass(frozen=True, slots=True)
class DatagenConfig:
    """The settings that decide what is generated (all part of the fingerprint but ``seed``'s use
    is in it too: it picks each detail record's instruction).

    Args:
        kinds: ``conversation``, ``detail``, ``reasoning``.
        tools: expert names; ``None`` means those of :data:`DEFAULT_EXPERTS` that can run here
            (none when ``annotations`` are given).
        llm: an LLM spec string (``None``: the embedded default).
        cleanup: MiniGPT-4's second pass over detail descriptions.
        few_shot: a folder of prompts in LLaVA's layout (``None``: mmreact's own).
        reply_format: ``blocks`` (LLaVA's ``Question:``/``===``/``Answer:``) or ``json``.
        annotations: a JSONL of per-image contexts, or COCO captions/instances JSON files.
        context: how expert outputs become context text.
        max_pairs: the most question/answer pairs per reply (default: 4 conversation, 2 reasoning).
        seed: picks each detail record's instruction.
    """

    kinds: tuple[str, ...] = KINDS
    tools: tuple[str, ...] | None = None
    llm: str | None = None
    cleanup: bool = False
    few_shot: str | None = None
    reply_format: str = "blocks"
    annotations: tuple[str, ...] = ()
    context: ContextOptions = field(default_factory=ContextOptions)
    max_pairs: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", check_kinds(self.kinds))
        if self.reply_format not in ("blocks", "json"):
            raise ConfigError(f"Unknown reply format '{self.reply_format}'; use blocks or json.")
        if self.max_pairs is not None and not 1 <= self.max_pairs <= 20:
            raise ConfigError(f"max_pairs must be between 1 and 20, got {self.max_pairs}.")
        if isinstance(self.annotations, str):
            object.__setattr__(self, "annotations", (self.annotations,))


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise ConfigError(f"Cannot read {path} ({exc.strerror or exc}).") from None
    return h.hexdigest()[:16]


def fingerprint(config: DatagenConfig, *, tools: list[Any], llm_name: str, prompt_digests: dict[str, str]
                ) -> dict[str, Any]:
    """What a resumed run must share with the run that made the folder."""
    return {
        "kinds": list(config.kinds),
        "tools": sorted(f"{t.name}={getattr(t, 'cache_version', t.name)}" for t in tools),
        "llm": llm_name,
        "cleanup": config.cleanup,
        "prompts": prompt_digests,
        "reply_format": config.reply_format,
        "annotations": [file_digest(p) for p in config.annotations],
        "context": config.context.to_dict(),
        "max_pairs": config.max_pairs,
        "seed": config.seed,
    }


_LABELS = {"kinds": "kinds", "tools": "tools", "llm": "LLM", "cleanup": "cleanup setting", "prompts": "prompts",
           "reply_format": "reply format", "annotations": "annotation files", "context": "context settings",
           "max_pairs": "pair limit", "seed": "seed"}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(x) for x in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """One phrase naming the first setting that differs (``None`` when none does)."""
    for key, label in _LABELS.items():
        if old.get(key) != new.get(key):
            if key == "prompts":
                return "its prompts differ"
            return f"its {label}: {_show(old.get(key))} then, {_show(new.get(key))} now"
    return None

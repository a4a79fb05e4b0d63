"""Prompts: per kind, a system message and few-shot examples in LLaVA's folder layout.

A kind's folder holds ``system_message.txt`` and pairs ``NNN_caps.txt`` (an example context) /
``NNN_conv.txt`` (the reply written for it). The request is the system message, then each
example as a user turn (the context) and an assistant turn (the reply), then the image's own
context as the last user turn: the way LLaVA sent its prompts.

mmreact ships its own folders (``mmreact/datagen/prompts/``), written for mmreact's shipped images
(the receipt in ``examples/``, the rendered sign and menu of the built-in eval set, scikit-image's
photographs). ``few_shot`` takes any folder in the same layout: either one holding a folder per
kind (``conversation/``, ``detail_description/``, ``complex_reasoning/``, LLaVA's own names; or
``detail/``, ``reasoning/``), or, when one kind is asked for, that kind's folder itself.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..llms.base import Message
from ._formats import (
    QA,
    TextFormat,
    block_format,
    json_format,
    paragraph_format,
    parse_blocks,
    render_json,
)

__all__ = ["KINDS", "FOLDERS", "FewShot", "ReplySpec", "load_prompts", "load_folder", "reply_spec",
           "detail_instruction", "cleanup_prompt"]

KINDS: tuple[str, ...] = ("conversation", "detail", "reasoning")
#: kind -> folder name (LLaVA's names), and the other names a user's folder may use
FOLDERS = {"conversation": "conversation", "detail": "detail_description", "reasoning": "complex_reasoning"}
_ALIASES = {"conversation": ("conversation", "conv"), "detail": ("detail_description", "detail"),
            "reasoning": ("complex_reasoning", "reasoning")}
#: Conversation prompts read the context without boxes (LLaVA generated conversations from captions).
WITH_BOXES = {"conversation": False, "detail": True, "reasoning": True}
_EXAMPLE = re.compile(r"^(\d+)_(caps|conv)\.txt$")
_JSON_NOTE = ('\n\nReply with a JSON list instead of that layout: [{"question": "...", "answer": "..."}, ...], '
              "one object per exchange.")


@dataclass(frozen=True, slots=True)
class FewShot:
    """One kind's prompt: the system message and the (context, reply) examples."""

    kind: str
    system: str
    examples: tuple[tuple[str, str], ...]
    source: str
    instructions: tuple[str, ...] = ()  # detail: the human turns, one picked per record

    def digest(self) -> str:
        h = hashlib.sha256(self.system.encode())
        for caps, conv in self.examples:
            h.update(b"\x00" + caps.encode() + b"\x01" + conv.encode())
        for line in self.instructions:
            h.update(b"\x02" + line.encode())
        return h.hexdigest()[:16]

    @property
    def language(self) -> str:
        """The language of the system message (``en`` when it cannot tell): replies in another
        language are rejected."""
        from ._checks import language_of

        found = language_of(self.system)
        return found.split("/")[0] if found else "en"

    def messages(self, context_text: str, reply_format: str = "blocks") -> list[Message]:
        """System, then each example as user/assistant turns, then ``context_text``."""
        system = self.system
        convert = reply_format == "json" and self.kind in ("conversation", "reasoning")
        if convert:
            system += _JSON_NOTE
        out = [Message("system", system)]
        for caps, conv in self.examples:
            out.append(Message("user", caps))
            out.append(Message("assistant", render_json(parse_blocks(conv).pairs) if convert else conv))
        out.append(Message("user", context_text))
        return out


@dataclass(frozen=True, slots=True)
class ReplySpec:
    """How a kind's reply is constrained and read."""

    text_format: TextFormat
    max_tokens: int
    blocks: bool  # question/answer pairs (else one description)


def reply_spec(kind: str, reply_format: str = "blocks", *, max_pairs: int | None = None,
               answer_chars: int | None = None) -> ReplySpec:
    """The language each kind's reply is drawn from on local backends, and its token budget.

    ``max_tokens`` covers the longest reply the language holds (at worst one token per
    character), so a constrained reply is never cut off (the context window may still end it).
    """
    if kind == "detail":
        fmt = paragraph_format(max_chars=answer_chars or 1200, max_paragraphs=2)
        return ReplySpec(fmt, (fmt.max_chars or 1200) + 8, blocks=False)
    if reply_format not in ("blocks", "json"):
        raise ConfigError(f"Unknown reply format '{reply_format}'; use blocks or json.")
    pairs = max_pairs or (4 if kind == "conversation" else 2)
    chars = answer_chars or (300 if kind == "conversation" else 600)
    make = block_format if reply_format == "blocks" else json_format
    fmt = make(1, pairs, question_chars=160, answer_chars=chars)
    return ReplySpec(fmt, (fmt.max_chars or 0) + 8, blocks=True)


# -- loading ---------------------------------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path} ({exc.strerror or exc}).") from None


def load_folder(folder: str | Path | Any, kind: str) -> FewShot:
    """One kind's prompt from a folder in LLaVA's layout (checked; errors are one sentence)."""
    path = Path(str(folder)) if not isinstance(folder, Path) else folder
    if not path.is_dir():
        raise ConfigError(f"The few-shot folder {path} does not exist.")
    system_file = path / "system_message.txt"
    if not system_file.is_file():
        raise ConfigError(f"The few-shot folder {path} has no system_message.txt.")
    system = _read(system_file)
    if not system:
        raise ConfigError(f"{system_file} is empty.")
    found: dict[str, dict[str, Path]] = {}
    for f in path.iterdir():
        m = _EXAMPLE.match(f.name)
        if m:
            found.setdefault(m.group(1), {})[m.group(2)] = f
    examples = []
    for num in sorted(found, key=int):
        pair = found[num]
        if set(pair) != {"caps", "conv"}:
            missing = "conv" if "caps" in pair else "caps"
            raise ConfigError(f"The few-shot folder {path} has {num}_{next(iter(pair))}.txt but no "
                              f"{num}_{missing}.txt.")
        caps, conv = _read(pair["caps"]), _read(pair["conv"])
        if not caps or not conv:
            raise ConfigError(f"The few-shot example {num} in {path} is empty.")
        if kind in ("conversation", "reasoning"):
            parsed = parse_blocks(conv)
            if not parsed.ok:
                raise ConfigError(f"{pair['conv']} does not follow the Question:/===/Answer: layout "
                                  f"({parsed.problems[0] if parsed.problems else 'no pairs'}).")
        examples.append((caps, conv))
    if not examples:
        raise ConfigError(f"The few-shot folder {path} has no examples (NNN_caps.txt with NNN_conv.txt).")
    instructions: tuple[str, ...] = ()
    if kind == "detail":
        extra = path / "instructions.txt"
        lines = _read(extra).splitlines() if extra.is_file() else _shipped_instructions()
        instructions = tuple(s.strip() for s in lines if s.strip())
    return FewShot(kind, system, tuple(examples), str(path), instructions)


def _shipped_root() -> Path:
    return Path(str(resources.files("mmreact.datagen").joinpath("prompts")))


def _shipped_instructions() -> list[str]:
    return (_shipped_root() / FOLDERS["detail"] / "instructions.txt").read_text(encoding="utf-8").splitlines()


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    out = []
    for k in kinds:
        k = k.strip().lower()
        if not k:
            continue
        if k not in KINDS:
            raise ConfigError(f"Unknown kind '{k}'; use {', '.join(KINDS)}.")
        if k not in out:
            out.append(k)
    if not out:
        raise ConfigError(f"Give at least one kind: {', '.join(KINDS)}.")
    return tuple(out)


def load_prompts(kinds: Sequence[str], few_shot: str | Path | None = None) -> dict[str, FewShot]:
    """Each kind's prompt: the shipped ones, or those in ``few_shot`` (see the module notes)."""
    kinds = check_kinds(kinds)
    if few_shot is None:
        root = _shipped_root()
        return {k: load_folder(root / FOLDERS[k], k) for k in kinds}
    root = Path(few_shot).expanduser()
    if not root.is_dir():
        raise ConfigError(f"The few-shot folder {root} does not exist.")
    if (root / "system_message.txt").is_file():
        if len(kinds) != 1:
            raise ConfigError(f"{root} holds the prompt of one kind; ask for that kind alone with --kinds, or give "
                              "a folder with conversation/, detail_description/ and complex_reasoning/ in it.")
        return {kinds[0]: load_folder(root, kinds[0])}
    out = {}
    for k in kinds:
        sub = next((root / name for name in _ALIASES[k] if (root / name).is_dir()), None)
        if sub is None:
            raise ConfigError(f"The few-shot folder {root} has no {FOLDERS[k]}/ folder for the {k} kind.")
        out[k] = load_folder(sub, k)
    return out


def cleanup_prompt() -> FewShot:
    """MiniGPT-4's second pass: the system message and example that fix a raw description."""
    return load_folder(_shipped_root() / "cleanup", "cleanup")


def detail_instruction(prompt: FewShot, record_id: str, seed: int = 0) -> str:
    """The human turn of a detail record: one of the instructions, fixed by the record id and seed."""
    options = prompt.instructions or tuple(_shipped_instructions())
    return random.Random(f"{seed}:{record_id}").choice(options)


def example_pairs(prompt: FewShot) -> list[tuple[str, list[QA]]]:
    """The examples' contexts and their question/answer pairs (for tests and checks)."""
    return [(caps, list(parse_blocks(conv).pairs)) for caps, conv in prompt.examples]

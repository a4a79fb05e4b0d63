"""Solved examples for an eval run (``mmreact eval --shots K [--shots-from FILE]``).

Decisions:

* One set of K demonstrations for the whole run, shown before every item (so a local model's
  prompt prefix is shared across items): the first K examples of ``--shots-from FILE`` (the order
  of the file is the user's choice), or, without a file, K items drawn from the dataset with a
  seeded ``random.Random(seed).sample``; drawn items are shown with their first answer and no steps.
* Demonstrations are never scored: drawn items leave the scored set, and so does any item that is
  the same question about the same image bytes as an example from a file.
* The systems receive the examples as ``examples=`` (the agent runs and renders their steps, an
  end-to-end model interleaves their images); the result fingerprint then holds their hash, so
  results with different K, or other examples, never mix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fewshot import Example, examples_from_items, load_examples
from .dataset import EvalItem
from .fingerprint import file_hash


@dataclass(frozen=True)
class Shots:
    """What an eval run shows before each item, and what it left out of scoring."""

    k: int
    source: str
    examples: tuple[Example, ...] = field(repr=False)
    #: Items of the dataset that are not scored because they are demonstrations.
    excluded: tuple[str, ...] = ()

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id or f"#{i}" for i, e in enumerate(self.examples, start=1))

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "source": self.source, "ids": list(self.ids), "excluded": list(self.excluded)}

    def sentence(self) -> str:
        text = f"Solved examples shown before each question: K = {self.k} from {self.source}: {', '.join(self.ids)}"
        if self.excluded:
            text += f"; not scored: {', '.join(self.excluded)}"
        return text + "."


def _same(example: Example, item: EvalItem) -> bool:
    if example.question != item.question or len(example.images) != len(item.images):
        return False
    try:
        return all(isinstance(src, (str, Path)) and Path(src).is_file() and file_hash(str(src)) == file_hash(img)
                   for src, img in zip(example.images, item.images, strict=True))
    except OSError:
        return False


def choose(items: Sequence[EvalItem], k: int, source: str | None = None, seed: int = 0
           ) -> tuple[Shots | None, list[EvalItem]]:
    """The demonstrations for ``--shots k`` and the items left to score."""
    if k < 0:
        raise ConfigError(f"--shots must be 0 or more, got {k}.")
    if k == 0:  # --shots 0 --shots-from FILE is the K = 0 row of a table: nothing shown
        return None, list(items)
    if source is not None:
        available = load_examples(source)
        if k > len(available):
            raise ConfigError(f"--shots {k} asks for more examples than {source} holds ({len(available)}).")
        chosen = tuple(available[:k])
        excluded = [it.id for it in items if any(_same(e, it) for e in chosen)]
        left = [it for it in items if it.id not in excluded]
        if not left:
            raise ConfigError(f"Every item of the eval set is one of the examples in {source}; nothing is left to score.")
        return Shots(k=k, source=str(source), examples=chosen, excluded=tuple(excluded)), left
    if k >= len(items):
        raise ConfigError(f"--shots {k} would draw every item of the eval set ({len(items)}) and leave none to score; "
                          "use a smaller K or --shots-from FILE.")
    drawn = random.Random(seed).sample(list(items), k)
    ids = {it.id for it in drawn}
    return (Shots(k=k, source=f"the eval set (seed {seed})", examples=tuple(examples_from_items(drawn)),
                  excluded=tuple(it.id for it in drawn)),
            [it for it in items if it.id not in ids])

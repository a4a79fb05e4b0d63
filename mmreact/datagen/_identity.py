"""Is the image on disk still the one a record was made from?

A record carries the pixel hash of the image it was written for (``image_sha256``) and the
file's size and modification time when it was read (``file_stat``). Resuming a run and
exporting one both ask, per image path, whether the file there now is that image:

- ``same``: the size and mtime are those recorded (no decoding), or the file was read again and
  its pixels hash to the recorded hash (a ``touch`` or a copy changes nothing);
- ``changed``: other pixels (the file was replaced, or another folder holds a file of that name),
  or it cannot be read any more; an image that could not be read before (an ``error`` record,
  no hash) counts as changed once its file is another one (it was fixed);
- ``missing``: no file at that path.

Decision: the size and mtime are a fast path only; without them (records of an older mmreact)
or when they differ, the pixels decide. A file replaced by another of the same size whose mtime
was set back to the old one (``cp -p`` of a same-sized file) is the one case it misses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .records import Record

__all__ = ["Known", "State", "file_stat", "known_images", "state"]

State = Literal["same", "changed", "missing"]


@dataclass(frozen=True, slots=True)
class Known:
    """What the store recorded about one image path."""

    sha256: str | None
    stat: tuple[int, int] | None


def file_stat(path: str | Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, or ``None`` when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def known_images(records: Iterable[Record]) -> dict[str, Known]:
    """Image path -> what its latest record recorded (a record with a pixel hash wins over an
    error record without one)."""
    out: dict[str, Known] = {}
    for r in records:
        if r.kind.startswith("template") and not r.image_sha256:
            continue
        old = out.get(r.image)
        if old is not None and old.sha256 and not r.image_sha256:
            continue
        out[r.image] = Known(r.image_sha256, r.file_stat)
    return out


def state(path: str | Path, known: Known) -> State:
    """Whether the file at ``path`` is the image ``known`` describes (see the module notes)."""
    from ..errors import ImageError
    from ..images import load_image

    now = file_stat(path)
    if now is None:
        return "missing"
    if known.stat is not None and tuple(known.stat) == now:
        return "same"
    if known.sha256 is None:
        return "changed"  # it could not be read before and is another file now
    try:
        return "same" if load_image(path).sha256 == known.sha256 else "changed"
    except ImageError:
        return "changed"

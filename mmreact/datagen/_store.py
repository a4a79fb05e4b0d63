"""The output folder: an append-only record store that a rerun resumes.

::

    OUT/run.json        the run's fingerprint (kinds, tools, prompts, LLM, ...)
    OUT/records.jsonl   records from either engine, one JSON line each, appended as they are made
    OUT/shards/*.jsonl  records the Ray engine of older versions wrote at the end of a run (read)
    OUT/.lock           held by the run writing to the folder

Decisions:

- Each line is written whole, flushed and fsync'd under a lock, so a killed run (``kill -9``)
  loses at most the records in flight. On open, an unterminated last line of ``records.jsonl``
  (a torn write) is cut off; in a shard it is skipped. Any other line that is not a record is a
  one-sentence error naming the file and line.
- Exactly once: records have fixed ids (image hash + kind). Reading keeps the first record of
  each (id, image) pair and drops repeats (a Ray task that ran twice); an ``error`` record is
  replaced by a later try for the same id, and nothing ever replaces an ``accepted`` or
  ``rejected`` one (a retried task's error comes too late). A record of the same id from another
  path holds the same pixels: :func:`~mmreact.datagen.filters.mark_duplicates` rejects it; a
  pair said on many images is marked by :func:`~mmreact.datagen.filters.mark_generic`.
- Records key on what the image is: each keeps its pixel hash and the file's size and mtime, so
  a rerun finds images that changed since (:mod:`mmreact.datagen.identity`); their lines are
  dropped (:meth:`Store.drop_images`) and the run makes them again.
- A folder made by one configuration is never resumed with another: :meth:`Store.open` compares
  the fingerprints and names the first difference.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import describe_difference
from .filters import mark_duplicates, mark_generic
from .records import Record

__all__ = ["Store", "RECORDS_FILE", "RUN_FILE", "SHARDS_DIR"]

RECORDS_FILE = "records.jsonl"
RUN_FILE = "run.json"
SHARDS_DIR = "shards"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1


def _parse_lines(path: Path, data: bytes, *, shard: bool) -> list[Record]:
    out = []
    lines = data.split(b"\n")
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            out.append(Record.from_dict(json.loads(raw)))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
            if shard and lineno == len(lines):  # a shard's torn last line (no newline after it)
                continue
            raise ConfigError(f"{path}, line {lineno}: not a datagen record; delete that line to go on.") from None
    return out


def _write_info(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Store:
    """One output folder. Use :meth:`open` to start or resume a run, :meth:`existing` to read one."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / RECORDS_FILE
        self._file: Any = None
        self._write_lock = threading.Lock()
        self._lock_file: Any = None
        #: ``run.json`` as it was before :meth:`open` rewrote it (``{}`` for a new folder).
        self.previous: dict[str, Any] = {}

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, out: str | Path, fingerprint: dict[str, Any], *, fresh: bool = False,
             images_dir: str | Path | None = None) -> Store:
        """Start a run in ``out`` or resume the one there (same fingerprint, else :class:`ConfigError`)."""
        folder = Path(out).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"Cannot create the output folder {folder} ({exc.strerror or exc}).") from None
        store = cls(folder)
        run_file = folder / RUN_FILE
        if fresh:
            store._lock()
            for p in [folder / RECORDS_FILE, run_file, *sorted((folder / SHARDS_DIR).glob("*"))]:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        elif run_file.exists():
            store.previous = store.run_info()
            old = store.previous.get("fingerprint", {})
            diff = describe_difference(old, fingerprint)
            if diff is not None:
                raise ConfigError(f"{folder} holds a run made with another configuration ({diff}); use another "
                                  "--out, or --fresh to start over.")
        elif any(folder.iterdir()) and not (folder / RECORDS_FILE).exists():
            raise ConfigError(f"{folder} is not empty and holds no datagen run; choose another --out.")
        store._lock()
        info = {"version": FORMAT_VERSION, "fingerprint": fingerprint,
                "images_dir": str(Path(images_dir).expanduser().resolve()) if images_dir is not None else None}
        _write_info(run_file, info)
        store._repair()
        return store

    def restore_info(self) -> None:
        """Put back the ``run.json`` that :meth:`open` replaced (a resume refused after opening)."""
        if self.previous:
            _write_info(self.out / RUN_FILE, self.previous)

    @classmethod
    def existing(cls, out: str | Path) -> Store:
        """A folder a run wrote (for export, refilter, reports); :class:`ConfigError` if it is not one."""
        folder = Path(out).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"No datagen output folder at {folder}.")
        if not (folder / RUN_FILE).is_file():
            raise ConfigError(f"{folder} holds no datagen run (no {RUN_FILE}).")
        return cls(folder)

    def run_info(self) -> dict[str, Any]:
        try:
            data = json.loads((self.out / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{self.out / RUN_FILE} is unreadable; delete the folder or choose another --out.") \
                from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.out / RUN_FILE} is not a datagen run file.")
        return data

    def _lock(self) -> None:
        if self._lock_file is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return
        f = open(self.out / LOCK_FILE, "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise ConfigError(f"Another mmreact datagen run is writing to {self.out}; wait for it to end.") from None
        self._lock_file = f

    def _repair(self) -> None:
        """Cut an unterminated last line off ``records.jsonl`` (a write cut short by a kill)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())

    # -- writing ---------------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        line = record.to_json() + "\n"
        with self._write_lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._write_lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def shard_dir(self) -> Path:
        return self.out / SHARDS_DIR

    # -- reading ---------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        files = [self.path] if self.path.exists() else []
        if self.shard_dir.is_dir():
            files += sorted(p for p in self.shard_dir.iterdir() if p.suffix in (".jsonl", ".json") and p.is_file())
        return files

    def raw_records(self) -> Iterator[Record]:
        """Every record line in store order: ``records.jsonl``, then the shards by name."""
        for f in self.files():
            data = f.read_bytes()
            if f == self.path:
                data = data[: data.rfind(b"\n") + 1]  # the torn tail is not a record yet
            yield from _parse_lines(f, data, shard=f != self.path)

    def records(self) -> list[Record]:
        """The store's records, each (id, image) once, duplicates of an image and pairs said on many
        images marked (see module notes)."""
        out: list[Record] = []
        where: dict[tuple[str, str], int] = {}
        for r in self.raw_records():
            key = (r.id, r.image)
            i = where.get(key)
            if i is None:
                where[key] = len(out)
                out.append(r)
            elif out[i].status == "error":
                out[i] = r  # a later try (error or not) replaces an error
        return mark_generic(mark_duplicates(out))

    def progress(self, retry_errors: bool = False, records: list[Record] | None = None
                 ) -> tuple[set[tuple[str, str]], dict[str, set[str]]]:
        """The (id, image) pairs that are done, and the kinds done per image path (to skip whole
        images unread); ``records`` saves reading the store again."""
        done: set[tuple[str, str]] = set()
        by_image: dict[str, set[str]] = {}
        for r in self.records() if records is None else records:
            if r.status == "error" and retry_errors:
                continue
            done.add((r.id, r.image))
            by_image.setdefault(r.image, set()).add(r.kind)
        return done, by_image

    def drop_images(self, images: set[str]) -> int:
        """Remove every record line of these image paths (their files changed since; a run makes
        them again); returns how many lines went. The other lines are kept as they are."""
        lines = list(self.raw_records())
        kept = [r for r in lines if r.image not in images]
        if len(kept) < len(lines):
            self._replace(kept)
        return len(lines) - len(kept)

    def rewrite(self, records: list[Record]) -> None:
        """Replace the store with ``records`` (refilter): one ``records.jsonl``, shards folded in."""
        self._replace(records)

    def _replace(self, records: list[Record]) -> None:
        self._lock()
        with self._write_lock:
            if self._file is not None:  # appends go to the new file from now on
                self._file.close()
                self._file = None
        shards = self.files()[1:] if self.path.exists() else self.files()
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(r.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        for s in shards:
            s.unlink()

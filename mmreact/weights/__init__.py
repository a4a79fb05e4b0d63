"""Weights on demand: where a model's weights are, whether they are whole, and fetching them.

Each expert names one :class:`Weights` source (the Hugging Face hub for BLIP, Florence-2, CLIP and
``hf:`` LLMs in :mod:`.hub`; ultralytics' download for YOLO and EasyOCR's for its languages in
:mod:`.files`). A source answers, without the network, where the complete weights are on this
machine (:meth:`Weights.resolved`) and what state they are in (:meth:`Weights.status`, which may
make the one cached reachability probe of :mod:`.policy`); with the network it sizes a download
(:meth:`Weights.plan`) and fetches it (:meth:`Weights.fetch`) through the library's own downloader,
into that library's standard cache, with progress on stderr.

States (``Status.state``):

========== ==================================================================================
ready      complete weights are on this machine (``path``)
download   missing, and they will download on first use (the host answered the probe)
manual     missing; ``MMREACT_ALLOW_DOWNLOAD=0`` leaves downloading to ``mmreact pull``
offline    missing, and the host cannot be reached (or an offline switch is set)
unavailable no download can help: a wrong path or name, a missing package
========== ==================================================================================
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from ..errors import WeightsMissingError
from . import policy
from ._files import is_url, remote_size, url_file_name, whole_zip

State = Literal["ready", "download", "manual", "offline", "unavailable"]

__all__ = ["Broken", "FileToFetch", "Plan", "State", "Status", "Weights", "human_size",
           # weights that are single files at a URL (YOLO's .pt, EasyOCR's zips)
           "is_url", "remote_size", "url_file_name", "whole_zip"]


def human_size(n: int | None) -> str:
    """Bytes in decimal units, the way the hub and browsers show them: ``990 MB``, ``1.9 GB``."""
    if n is None:
        return "size unknown"
    if n < 1_000_000:
        return f"{max(n, 0) / 1000:.0f} kB" if n >= 1000 else f"{n} B"
    if n < 1_000_000_000:
        return f"{n / 1_000_000:.0f} MB"
    return f"{n / 1_000_000_000:.1f} GB"


@dataclass(frozen=True)
class FileToFetch:
    name: str
    size: int | None
    cached: bool


@dataclass(frozen=True)
class Broken:
    """A file on this machine that a fetch removes before downloading it again (``why``: how it is
    broken, e.g. ``"holds 1,000 of 2,000 bytes"``)."""

    path: str
    why: str


@dataclass(frozen=True)
class Plan:
    """What a fetch would do: the files, their sizes, which are already here, and where they go.

    ``repair`` lists copies in the cache that are there but not whole (a truncated blob): the
    library's downloader would take them for done, so :meth:`Weights.fetch` removes them first.
    """

    source: str
    destination: str
    files: tuple[FileToFetch, ...]
    repair: tuple[Broken, ...] = ()

    @property
    def to_fetch(self) -> tuple[FileToFetch, ...]:
        return tuple(f for f in self.files if not f.cached)

    @property
    def fetch_bytes(self) -> int | None:
        sizes = [f.size for f in self.to_fetch]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)

    def summary(self) -> str:
        """``3 of 6 files, 1.9 GB to download`` or ``nothing to download (6 files here)``."""
        if not self.to_fetch:
            return f"nothing to download ({len(self.files)} file{'s' if len(self.files) != 1 else ''} here)"
        count = len(self.to_fetch)
        files = f"{count} file{'s' if count != 1 else ''}" if count == len(self.files) else f"{count} of {len(self.files)} files"
        return f"{files}, {human_size(self.fetch_bytes)} to download"


@dataclass(frozen=True)
class Status:
    state: State
    path: str | None = None
    message: str | None = None

    @property
    def offered(self) -> bool:
        """Whether a tool with these weights can run now (possibly after downloading them)."""
        return self.state in ("ready", "download")


class Weights(ABC):
    """One model's weights: found locally, or fetched from where its library gets them.

    Subclasses set ``what`` (e.g. ``"BLIP captioning weights 'Salesforce/...'"``), ``pull``
    (the command that fetches them) and ``alternative`` (``", or point X at a local copy"``).
    """

    what: str = "weights"
    pull: str = "mmreact pull"
    alternative: str = ""

    # -- local, no network ---------------------------------------------------------------
    @abstractmethod
    def resolved(self) -> str | None:
        """The local path of the complete weights, else None (never touches the network)."""

    def problem(self) -> str | None:
        """One sentence when no download can help (a wrong path, an unknown name), else None."""
        return None

    def incomplete(self) -> str | None:
        """What a partial copy on this machine lacks (``"model.safetensors is missing"``), else None."""
        return None

    @abstractmethod
    def source_url(self) -> str:
        """The URL whose host must answer for a download to work (probed once per process)."""

    # -- network ---------------------------------------------------------------------------
    @abstractmethod
    def plan(self) -> Plan:
        """The files a fetch would download and their sizes (asks the server; downloads nothing)."""

    @abstractmethod
    def _fetch(self, plan: Plan, progress: bool) -> str:
        """Download what ``plan`` lists; return the local path (subclasses implement)."""

    def fetch(self, plan: Plan | None = None, *, progress: bool = True) -> str:
        """Download the weights (what is already here is kept) and return their local path.

        Raises :class:`WeightsMissingError` in one sentence when the download fails.
        """
        switch = policy.offline_switch()
        if switch:
            raise WeightsMissingError(f"{switch} turns downloads off: unset it to fetch the {self.what}.")
        plan = plan or self.plan()
        self._remove_broken(plan, progress)
        if plan.to_fetch and progress:
            sys.stderr.write(f"mmreact: downloading the {self.what} from {plan.source}: {plan.summary()}, "
                             f"into {plan.destination}\n")
            sys.stderr.flush()
        return self._fetch(plan, progress)

    def _remove_broken(self, plan: Plan, progress: bool) -> None:
        """Remove the broken copies ``plan.repair`` lists, so that they download again; a copy that
        cannot be removed is named in one sentence with what to delete."""
        import os

        for broken in plan.repair:
            if progress:
                sys.stderr.write(f"mmreact: {broken.path} {broken.why}: downloading it again\n")
            try:
                os.unlink(broken.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise WeightsMissingError(
                    f"{broken.path} {broken.why} and cannot be removed ({exc.strerror or exc}): delete it, "
                    f"then run `{self.pull}` again.") from None

    # -- derived ---------------------------------------------------------------------------
    def status(self) -> Status:
        """The weights' state here; may probe the source host (once per process), nothing more."""
        path = self.resolved()
        if path is not None:
            return Status("ready", path)
        problem = self.problem()
        if problem:
            return Status("unavailable", message=problem)
        switch = policy.offline_switch()
        if switch:
            name = switch.split("=")[0]
            return Status("offline", message=self._missing(f"with {name} unset ({switch} turns downloads off)"))
        mode = policy.first_use()
        if mode == "off":
            return Status("manual", message=self._missing("(MMREACT_ALLOW_DOWNLOAD=0 turns first-use downloads off)"))
        host = policy.host_of(self.source_url())
        if mode == "auto" and not policy.reachable(self.source_url()):
            return Status("offline", message=self._missing(f"where {host} can be reached (it cannot from here)"))
        return Status("download", message=(
            f"The {self.what} {self._where()}: they download from {host} on first use, or now with `{self.pull}`."))

    def ensure(self) -> str:
        """The local path, fetching the weights first when the status allows; else raises
        :class:`WeightsMissingError` with the status sentence."""
        status = self.status()
        if status.path is not None:
            return status.path
        if status.state != "download":
            raise WeightsMissingError(status.message or f"The {self.what} are not on this machine.")
        return self.fetch()

    def _where(self) -> str:
        gap = self.incomplete()
        return f"are incomplete on this machine ({gap})" if gap else "are not on this machine"

    def _missing(self, how: str = "") -> str:
        how = f" {how}" if how else ""
        return f"The {self.what} {self._where()}: run `{self.pull}`{how}{self.alternative}."

    def missing_sentence(self) -> str:
        """Why the weights are not usable here and how to get them, in one sentence."""
        status = self.status()
        if status.state in ("offline", "manual", "unavailable") and status.message:
            return status.message
        return self._missing()

"""Weights from the Hugging Face hub: BLIP, Florence-2, CLIP, ``hf:`` LLMs.

Readiness is never "config.json exists". A snapshot is complete when it has what the model needs
(:data:`EXPERT_NEEDS`: config, weights, image processor and tokenizer files; :data:`LLM_NEEDS`:
no image processor): every safetensors file whole (its header's data size matches the file
size), every shard an index names present, and, when the hub's cached tree listing for that
commit is on disk, every file :func:`select_files` picks from it present with the listed size.
An interrupted download therefore never counts as ready.

Fetching downloads only the files a transformers checkpoint needs (:func:`select_files`: the
top-level JSON/text/tokenizer files plus one weight format, safetensors when there are any), with
the real ``huggingface_hub`` client (``snapshot_download``, which keeps its own cache layout and
progress bars) into ``HF_HUB_CACHE``. Sizes come from ``HfApi.model_info(files_metadata=True)``.
``HF_ENDPOINT`` is read when a call is made. Both calls are bounded (:mod:`.waits`): the sizes by
``MMREACT_HUB_TIMEOUT`` in all, the download by ``MMREACT_STALL_TIMEOUT`` without progress.

A file of the cache that is there but not whole (cut short by a full disk or a copy that stopped)
is one the client would take for done and never fetch again; :meth:`HubWeights.plan` lists it in
``Plan.repair`` and :meth:`~mmreact.weights.Weights.fetch` removes it first. What is still not whole
after a download is named as this machine's file with what to delete; only a file the hub itself
serves short of its header is blamed on the checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import WeightsMissingError, one_line
from . import Broken, FileToFetch, Plan, Weights, policy
from . import _waits as waits

EXPERT_NEEDS = ("config", "weights", "processor", "tokenizer")
LLM_NEEDS = ("config", "weights", "tokenizer")
BASIC_NEEDS = ("config", "weights")
DEFAULT_ENDPOINT = "https://huggingface.co"
#: The hub client writes a download to disk in pieces of at most this many bytes (its default is
#: 10 MB, which a slow connection takes minutes to fill): the stall bound (:mod:`.waits`) sees
#: progress on disk, so a download that moves faster than WRITE_CHUNK / STALL_TIMEOUT (about
#: 9 kB/s) is never taken for stalled.
WRITE_CHUNK = 256 * 1024

_META_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".jinja")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model")
_MAIN_SAFETENSORS = re.compile(r"model(-\d+-of-\d+)?\.safetensors")
_BIN = re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin")


def endpoint() -> str:
    """The hub the client talks to: ``HF_ENDPOINT`` (read now), else the client's default."""
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        try:
            from huggingface_hub import constants

            value = constants.ENDPOINT
        except ImportError:
            value = DEFAULT_ENDPOINT
    return value.rstrip("/")


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def select_files(names: Iterable[str]) -> list[str]:
    """The files of a repository a transformers checkpoint needs: top-level JSON, text and
    tokenizer files, and one weight format (the main safetensors files when there are any, else
    ``pytorch_model*.bin``). README, images, ONNX/TF/Flax copies and remote code are left out."""
    top = [n for n in names if "/" not in n and n not in (".gitattributes", "README.md")]
    meta = [n for n in top if n.endswith(_META_SUFFIXES)]
    safetensors = [n for n in top if n.endswith(".safetensors")]
    if safetensors:
        main = [n for n in safetensors if _MAIN_SAFETENSORS.fullmatch(n)]
        weights = main or safetensors
        meta = [n for n in meta if not n.endswith(".bin.index.json")]
    else:
        weights = [n for n in top if _BIN.fullmatch(n)]
        meta = [n for n in meta if not n.endswith(".safetensors.index.json")]
    return sorted({*meta, *weights})


# -- completeness -------------------------------------------------------------------------
_whole: dict[tuple[str, int, int], bool] = {}
_whole_lock = threading.Lock()


def safetensors_whole(path: Path) -> bool:
    """Whether a safetensors file holds all the bytes its header promises (reads the header only)."""
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with _whole_lock:
            if key in _whole:
                return _whole[key]
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                ok = False
            else:
                (n,) = struct.unpack("<Q", raw)
                header = json.loads(f.read(n)) if 0 < n <= 100_000_000 else None
                ends = [v["data_offsets"][1] for k, v in (header or {}).items()
                        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
                ok = header is not None and st.st_size == 8 + n + max(ends, default=0)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    with _whole_lock:
        _whole[key] = ok
    return ok


def _bin_whole(path: Path) -> bool:
    """A torch ``.bin`` is a zip (its end record is the last thing written) or a legacy pickle."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            return True
        with path.open("rb") as f:
            return f.read(1) == b"\x80" and path.stat().st_size > 1
    except OSError:
        return False


def _weights_gap(d: Path) -> str | None:
    for index_name, check in (("model.safetensors.index.json", safetensors_whole),
                              ("pytorch_model.bin.index.json", _bin_whole)):
        index = d / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError):
                return f"{index_name} is unreadable"
            for shard in shards:
                if not (d / shard).is_file():
                    return f"{shard} is missing"
                if not check(d / shard):
                    return f"{shard} is incomplete"
            return None
    safetensors = sorted(p for p in d.glob("*.safetensors") if p.is_file())
    if safetensors:
        for p in safetensors:
            if not safetensors_whole(p):
                return f"{p.name} is incomplete"
        return None
    if (d / "pytorch_model.bin").is_file():
        return None if _bin_whole(d / "pytorch_model.bin") else "pytorch_model.bin is incomplete"
    return "model.safetensors is missing"


def missing_parts(directory: str | Path, needs: Sequence[str] = BASIC_NEEDS,
                  expected: dict[str, int | None] | None = None) -> str | None:
    """What keeps ``directory`` from being a complete checkpoint (one phrase), else None.

    ``expected`` maps file names to sizes that must all be there (the hub's tree listing).
    """
    d = Path(directory)
    if "config" in needs and not (d / "config.json").is_file():
        return "config.json is missing"
    if "weights" in needs and (gap := _weights_gap(d)):
        return gap
    if "processor" in needs and not any((d / n).is_file() for n in _PROCESSOR_FILES):
        return "preprocessor_config.json is missing"
    if "tokenizer" in needs and not any((d / n).is_file() for n in _TOKENIZER_FILES):
        return "the tokenizer files are missing"
    for name, size in sorted((expected or {}).items()):
        p = d / name
        if not p.is_file():
            return f"{name} is missing"
        if size is not None and p.stat().st_size != size:
            return f"{name} is incomplete"
    return None


def _whole_file(path: Path, size: int | None, name: str | None = None) -> bool:
    """Whether ``path`` (the file ``name`` of the repository; a blob is named by its hash) is there with
    the size the hub lists and, for safetensors, all the bytes its header promises."""
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    return not (name or path.name).endswith(".safetensors") or safetensors_whole(path)


def _how_broken(path: Path, size: int | None) -> str:
    have = path.stat().st_size
    if size is not None and have != size:
        return f"holds {have:,} of the {size:,} bytes the hub lists (truncated)"
    return "is truncated (it holds fewer bytes than its header promises)"


def _bytes_under(folder: Path) -> tuple[int, int]:
    """(files, bytes) under ``folder``, symlinks not followed: grows while a download writes."""
    count = total = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            count += 1
            total += st.st_size
    return count, total


def _counting_tqdm(ticks: list[int]) -> type:
    """The hub client's progress bar class, counting every update in ``ticks[0]`` (also when bars are
    off): how a download that writes elsewhere first (Xet) still shows that it moves."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Counting(hf_tqdm):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            ticks[0] += 1
            return super().update(n)

    return Counting


def _repo_dir(model_id: str) -> Path:
    return hub_cache() / ("models--" + model_id.replace("/", "--"))


def cached_snapshot(model_id: str) -> tuple[Path | None, str | None]:
    """(the cached snapshot folder of ``main``, its commit), either None when nothing is cached."""
    try:
        ref = _repo_dir(model_id) / "refs" / "main"
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
    except (ImportError, OSError):
        return None, None
    if not commit:
        return None, None
    snapshot = _repo_dir(model_id) / "snapshots" / commit
    return (snapshot if snapshot.is_dir() else None), commit


def _expected_from_tree(model_id: str, commit: str) -> dict[str, int | None] | None:
    """Sizes of the selected files from the tree listing ``snapshot_download`` caches on disk."""
    try:
        from huggingface_hub import get_cached_repo_tree
    except ImportError:  # an older huggingface_hub keeps no tree listing
        return None
    try:
        files = get_cached_repo_tree(model_id, revision=commit)
    except Exception:  # noqa: BLE001 - no listing cached for this commit
        return None
    sizes = {f.path: f.size for f in files}
    return {name: sizes[name] for name in select_files(sizes)}


def valid_repo_id(model_id: str) -> bool:
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(model_id)
    except ImportError:
        return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model_id))
    except Exception:  # noqa: BLE001 - HFValidationError
        return False
    return True


def is_path(spec: str) -> bool:
    """Whether ``spec`` names a folder rather than a hub id (it exists, or looks like a path)."""
    p = Path(spec).expanduser()
    return p.exists() or p.is_absolute() or spec.startswith((".", "~"))


# -- the source ----------------------------------------------------------------------------
class HubWeights(Weights):
    """A transformers checkpoint: a local folder, or a hub id fetched into the hub's cache.

    Args:
        model_id: a hub id (``org/name``) or a folder.
        needs: the parts that must be there (:data:`EXPERT_NEEDS`, :data:`LLM_NEEDS`...).
        what: ``"BLIP captioning"``: messages say "the BLIP captioning weights 'id'".
        option: how to name another copy (``MMREACT_CAPTION_MODEL``), for messages.
        pull: the command that fetches them (``mmreact pull caption``).
        alternative: replaces ``", or point {option} at a local copy"`` in messages.
    """

    def __init__(self, model_id: str, *, needs: Sequence[str] = BASIC_NEEDS, what: str = "model",
                 option: str = "", pull: str | None = None, alternative: str | None = None) -> None:
        self.model_id = model_id.strip()
        self.needs = tuple(needs)
        self.kind = what
        self.what = f"{what} weights '{self.model_id}'"
        self.pull = pull or f"hf download {self.model_id}"
        self.alternative = alternative if alternative is not None else (
            f", or point {option} at a local copy" if option else "")

    @property
    def is_path(self) -> bool:
        return is_path(self.model_id)

    # -- local ------------------------------------------------------------------------------
    def _local(self) -> tuple[Path | None, str | None]:
        """(folder to check, phrase of what it lacks or None)."""
        if self.is_path:
            p = Path(self.model_id).expanduser()
            return (p, missing_parts(p, self.needs)) if p.is_dir() else (None, None)
        if not valid_repo_id(self.model_id):
            return None, None
        snapshot, commit = cached_snapshot(self.model_id)
        if snapshot is None or commit is None:
            return None, None
        return snapshot, missing_parts(snapshot, self.needs, _expected_from_tree(self.model_id, commit))

    def resolved(self) -> str | None:
        folder, gap = self._local()
        return str(folder) if folder is not None and gap is None else None

    def incomplete(self) -> str | None:
        folder, gap = self._local()
        return gap if folder is not None and any(folder.iterdir()) else None

    def problem(self) -> str | None:
        if self.is_path:
            p = Path(self.model_id).expanduser()
            if not p.exists():
                return f"There is no model folder at {p}: give a saved transformers model folder or a hub id."
            if not p.is_dir():
                return f"{p} is not a folder: give a saved transformers model folder or a hub id."
            gap = missing_parts(p, self.needs)
            if gap:
                return f"The model folder {p} is incomplete ({gap}): save the whole {self.kind} model there."
            return None
        if not valid_repo_id(self.model_id):
            return f"'{self.model_id}' is neither a model folder on this machine nor a Hugging Face model id."
        return None

    def source_url(self) -> str:
        return endpoint()

    # -- network ----------------------------------------------------------------------------
    def plan(self) -> Plan:
        from huggingface_hub import HfApi

        where = endpoint()
        limit = waits.hub_timeout()
        try:
            info = waits.within(limit, lambda: HfApi(endpoint=where).model_info(
                self.model_id, files_metadata=True, timeout=limit))
        except waits.NoAnswer:
            raise WeightsMissingError(self._no_answer(where, limit)) from None
        except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
            raise WeightsMissingError(self._failure(exc, where)) from None
        sizes = {s.rfilename: s.size for s in (info.siblings or [])}
        etags = {s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) for s in (info.siblings or [])}
        chosen = select_files(sizes)
        if not any(n.endswith((".safetensors", ".bin")) for n in chosen):
            raise WeightsMissingError(
                f"'{self.model_id}' on {where} has no safetensors or PyTorch weights transformers can load.")
        snapshot = _repo_dir(self.model_id) / "snapshots" / str(info.sha)
        blobs = _repo_dir(self.model_id) / "blobs"
        files, repair = [], []
        for name in chosen:
            here = snapshot / name
            cached = _whole_file(here, sizes[name])
            # a copy that is there but not whole (the file the snapshot links to, or the blob of this
            # version) would be taken for done by the hub client: fetch() removes it first (a link left
            # pointing at nothing is replaced by the client)
            copies = [] if cached else [here.resolve() if here.is_symlink() else here,
                                        *([blobs / etags[name]] if etags.get(name) else [])]
            for copy in dict.fromkeys(copies):
                if copy.exists() and not _whole_file(copy, sizes[name], name):
                    repair.append(Broken(str(copy), _how_broken(copy, sizes[name])))
            files.append(FileToFetch(name, sizes[name], cached))
        return Plan(source=f"{where}/{self.model_id}", destination=str(hub_cache()), files=tuple(files),
                    repair=tuple(repair))

    def _fetch(self, plan: Plan, progress: bool) -> str:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        where = endpoint()
        stall = waits.stall_timeout()
        constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, WRITE_CHUNK)
        ticks = [0]
        repo = _repo_dir(self.model_id)
        quiet = not progress and not are_progress_bars_disabled()
        if quiet:
            disable_progress_bars()
        partial_before = set(repo.glob("blobs/*.incomplete"))
        try:
            path = waits.while_moving(
                lambda: snapshot_download(self.model_id, allow_patterns=[f.name for f in plan.files], endpoint=where,
                                          etag_timeout=waits.hub_timeout(), tqdm_class=_counting_tqdm(ticks)),
                lambda: (ticks[0], _bytes_under(repo)), stall)
        except waits.Stalled:
            # the client never resumes another run's partial file (each run writes its own): drop this one's
            for partial in set(repo.glob("blobs/*.incomplete")) - partial_before:
                partial.unlink(missing_ok=True)
            raise WeightsMissingError(
                f"The download of the {self.what} from {where} stalled (nothing arrived for {stall:g} s): run "
                f"`{self.pull}` to try again (MMREACT_STALL_TIMEOUT sets the wait).") from None
        except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
            raise WeightsMissingError(self._failure(exc, where)) from None
        finally:
            if quiet:
                enable_progress_bars()
        for f in plan.files:  # a file the hub lists that is not whole here is this machine's, not the hub's
            here = Path(path) / f.name
            if here.is_file() and not _whole_file(here, f.size, f.name):
                if f.size is not None and here.stat().st_size != f.size:
                    raise WeightsMissingError(
                        f"{here.resolve()} {_how_broken(here, f.size)}: delete it, then run `{self.pull}` again.")
                raise WeightsMissingError(
                    f"{f.name} of '{self.model_id}' on {where} is itself incomplete (it holds fewer bytes than its "
                    f"header promises): this checkpoint cannot be loaded.")
        gap = missing_parts(path, self.needs, {f.name: f.size for f in plan.files})
        if gap:
            raise WeightsMissingError(
                f"The {self.what} fetched from {where} are not usable ({gap}): this checkpoint lacks files "
                f"the {self.kind} model needs.")
        return str(path)

    def _no_answer(self, where: str, seconds: float) -> str:
        return (f"{where} did not answer within {seconds:g} s, so the {self.what} cannot be downloaded now; try "
                f"again later (MMREACT_HUB_TIMEOUT sets the wait).")

    def _failure(self, exc: BaseException, where: str) -> str:
        from huggingface_hub.errors import (
            GatedRepoError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )

        if isinstance(exc, GatedRepoError):
            return (f"'{self.model_id}' on {where} is gated: accept its terms on its page and log in with "
                    "`hf auth login`.")
        if isinstance(exc, RepositoryNotFoundError):
            return (f"There is no model '{self.model_id}' on {where} (or it is private): check the id, or log in "
                    "with `hf auth login`.")
        if isinstance(exc, OfflineModeIsEnabled):
            return f"The hub client is in offline mode (HF_HUB_OFFLINE), so the {self.what} cannot be fetched."
        if policy.is_connection_error(exc):
            return policy.unreachable(where, self.what)
        return f"Fetching the {self.what} from {where} failed ({one_line(exc, 200)}); run `{self.pull}` again."


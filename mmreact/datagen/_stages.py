"""The stages of a run, as plain functions: both engines (local, Ray) call exactly these.

1. :func:`scan_images` lists the image folder (sorted, so runs are reproducible).
2. :func:`expert_stage` reads a batch of images, runs each expert once per batch
   (``run_batch``: one forward pass per batch, results in the shared cache) and turns the
   artifacts into a :class:`~mmreact.datagen.context.Context` per image; it yields one
   :class:`Job` per (image, kind) still to do, and the records that need no LLM (unreadable
   images, duplicates, images the experts found nothing in).
3. :func:`llm_stage` writes one record: prompt, reply (and cleanup), parse, filters.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ImageError, one_line
from ._annotations import annotation_context, lookup
from ._formats import parse_blocks, parse_json, parse_paragraph
from ._identity import file_stat
from ._store import Store
from .config import DatagenConfig, Price
from .context import Context, from_artifacts
from .filters import apply_filters
from .prompts import WITH_BOXES, FewShot, detail_instruction, reply_spec
from .records import Reason, Record, error_id, record_id

__all__ = ["ImageTask", "Job", "scan_images", "expert_stage", "llm_stage", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class Prepared:
    """Everything a run needs, settled once in the driver."""

    config: DatagenConfig
    store: Store
    tools: list[Any]
    llm: Any
    llm_source: Any  # what load_llm was given (a spec string or an LLM object), for Ray actors
    prompts: dict[str, FewShot]
    cleanup: FewShot | None
    fingerprint: dict[str, Any]
    fingerprint_id: str
    done: set[tuple[str, str]]
    done_by_image: dict[str, set[str]]
    seen: dict[str, str]
    annotations: dict[str, dict[str, Any]] | None
    price: Price | None
    vocab: Any = None
    replaced: list[str] = field(default_factory=list)  # images whose files changed since: made again


@dataclass(frozen=True, slots=True)
class ImageTask:
    path: str  # absolute
    image: str  # relative to the image folder, "/"-separated (the id of the image in exports)


@dataclass(frozen=True, slots=True)
class Job:
    """One (image, kind) for the LLM."""

    id: str
    image: str
    kind: str
    sha256: str
    width: int
    height: int
    context: Context
    stat: tuple[int, int] | None = None  # the file's (size, mtime_ns) when it was read


def scan_images(folder: str | Path, limit: int | None = None) -> list[ImageTask]:
    """Every image file under ``folder`` (recursively, by suffix), sorted by relative path."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise ConfigError(f"No image folder at {root}.")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the folder that holds the images.")
    found = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise ConfigError(f"No images ({', '.join(IMAGE_SUFFIXES)}) under {root}.")
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}.")
        found = found[:limit]
    return [ImageTask(str(p.resolve()), p.relative_to(root).as_posix()) for p in found]


def _error(image: str, kind: str, message: str, config: str, rid: str | None = None, sha: str | None = None,
           stat: tuple[int, int] | None = None) -> Record:
    return Record(id=rid or error_id(image, kind), image=image, kind=kind, status="error", image_sha256=sha,
                  error=message, config=config, file_stat=stat)


def _run_tool(tool: Any, images: list[Any]) -> list[Any]:
    """Observations for ``images`` (one batch; per image after a batch failure). A failure becomes an
    exception object in its slot."""
    batch = getattr(tool, "run_batch", None)
    if batch is not None and len(images) > 1:
        try:
            return list(batch(images))
        except Exception:  # noqa: BLE001 - find the image that fails, one by one
            pass
    out: list[Any] = []
    for im in images:
        try:
            out.append(batch([im])[0] if batch is not None else tool(im))
        except Exception as exc:  # noqa: BLE001 - recorded as that image's error
            out.append(exc)
    return out


def expert_stage(tasks: Sequence[ImageTask], tools: Sequence[Any], config: DatagenConfig, fingerprint: str, *,
                 done: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
                 annotations: Mapping[str, Mapping[str, Any]] | None = None,
                 seen: Mapping[str, str] | None = None, claim: bool = True) -> tuple[list[Job], list[Record]]:
    """Jobs for the LLM, and the records that need none (see the module notes).

    ``done`` holds the (id, image) pairs already in the store (skipped); ``annotations`` maps an
    image path to a user's own labels; ``seen`` (pixel hash -> the image that owns those pixels)
    rejects a duplicate image before an LLM call is spent on it; with ``claim`` (the local engine,
    which sees images in order) the images read here are added to it.
    """
    from ..images import load_image

    jobs: list[Job] = []
    records: list[Record] = []
    loaded: list[tuple[ImageTask, Any, list[str]]] = []
    stats: dict[str, tuple[int, int] | None] = {}
    for task in tasks:
        stats[task.image] = stat = file_stat(task.path)
        try:
            img = load_image(task.path)
        except ImageError as exc:
            records += [_error(task.image, k, str(exc), fingerprint, stat=stat) for k in config.kinds
                        if (error_id(task.image, k), task.image) not in done]
            continue
        kinds = [k for k in config.kinds if (record_id(img.sha256, k), task.image) not in done]
        if not kinds:
            continue
        if seen is not None:
            owner = seen.get(img.sha256, task.image)
            if claim and isinstance(seen, dict):
                seen.setdefault(img.sha256, task.image)
            if owner != task.image:
                records += [Record(id=record_id(img.sha256, k), image=task.image, kind=k, status="rejected",
                                   image_sha256=img.sha256, width=img.width, height=img.height,
                                   reasons=(Reason("duplicate", f"the same pixels as {owner}"),), config=fingerprint,
                                   file_stat=stat)
                            for k in kinds]
                continue
        loaded.append((task, img, kinds))
    if not loaded:
        return jobs, records
    artifacts: list[dict[str, Any]] = [{} for _ in loaded]
    failures: list[str | None] = [None for _ in loaded]
    for tool in tools:
        for i, obs in enumerate(_run_tool(tool, [img for _, img, _ in loaded])):
            if isinstance(obs, BaseException):
                failures[i] = failures[i] or f"the {tool.name} expert failed: {one_line(obs)}"
            elif getattr(obs, "error", False):
                failures[i] = failures[i] or f"the {tool.name} expert failed: {obs.text}"
            else:
                artifacts[i][tool.name] = getattr(obs, "artifact", None)
    for (task, img, kinds), arts, failure in zip(loaded, artifacts, failures):
        if failure is not None:
            records += [_error(task.image, k, failure, fingerprint, record_id(img.sha256, k), img.sha256,
                               stats[task.image]) for k in kinds]
            continue
        context = from_artifacts(arts, img.width, img.height, config.context)
        given = lookup(annotations, task.image) if annotations else None
        if given is not None:
            context = annotation_context(given, img.width, img.height).merged(context)
        if context.empty:
            records += [Record(id=record_id(img.sha256, k), image=task.image, kind=k, status="rejected",
                               image_sha256=img.sha256, width=img.width, height=img.height,
                               context=context.to_dict(), config=fingerprint, file_stat=stats[task.image],
                               reasons=(Reason("context", "nothing is known about this image to write from"),))
                        for k in kinds]
            continue
        jobs += [Job(record_id(img.sha256, k), task.image, k, img.sha256, img.width, img.height, context,
                     stats[task.image]) for k in kinds]
    # Grouped by kind: consecutive calls then share the few-shot prefix of the prompt, which a local
    # model (llama.cpp) keeps evaluated, so only each image's own context is read anew.
    jobs.sort(key=lambda j: config.kinds.index(j.kind))
    return jobs, records


def _complete(llm: Any, messages: list[Any], spec: Any) -> Any:
    from ..llms.base import LLMRequest

    return llm.complete(LLMRequest(messages=messages, kind="text", text_format=spec.text_format,
                                   max_tokens=spec.max_tokens))


def llm_stage(job: Job, llm: Any, prompts: Mapping[str, FewShot], config: DatagenConfig, fingerprint: str, *,
              cleanup: FewShot | None = None, vocab: Any = None) -> Record:
    """One record for ``job``: the LLM's reply (and cleanup), parsed and filtered.

    An LLM failure becomes an ``error`` record (a rerun with ``retry_errors`` tries it again).
    """
    prompt = prompts[job.kind]
    spec = reply_spec(job.kind, config.reply_format, max_pairs=config.max_pairs)
    context_text = job.context.text(boxes=WITH_BOXES[job.kind])
    base = Record(id=job.id, image=job.image, kind=job.kind, image_sha256=job.sha256, width=job.width,
                  height=job.height, context=job.context.to_dict(), prompt_context=context_text, config=fingerprint,
                  file_stat=job.stat)
    usage = {"name": getattr(llm, "name", "llm"), "calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
             "seconds": 0.0}

    def call(messages: list[Any]) -> str:
        t0 = time.perf_counter()
        comp = _complete(llm, messages, spec)
        usage["calls"] += 1
        usage["prompt_tokens"] += comp.prompt_tokens or 0
        usage["completion_tokens"] += comp.completion_tokens or 0
        usage["seconds"] = round(usage["seconds"] + time.perf_counter() - t0, 4)
        return str(comp.text).strip()

    try:
        raw = call(prompt.messages(context_text, config.reply_format))
        cleaned = None
        if job.kind == "detail" and config.cleanup and cleanup is not None:
            cleaned = call(cleanup.messages(raw))
    except Exception as exc:  # noqa: BLE001 - an LLM failure is this record's error
        return base.with_(status="error", error=one_line(exc), llm=usage)
    text = cleaned if cleaned is not None else raw
    if spec.blocks:
        parsed = (parse_blocks if config.reply_format == "blocks" else parse_json)(text)
    else:
        parsed = parse_paragraph(text, detail_instruction(prompt, job.id, config.seed))
    record = base.with_(raw=raw, cleaned=cleaned, pairs=tuple(p.to_dict() for p in parsed.pairs),
                        problems=parsed.problems, llm=usage, format_ok=spec.text_format.accepts(raw))
    return apply_filters(record, vocab, prompt.language)

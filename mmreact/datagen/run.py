"""A run from start to end: settle the configuration, open (or resume) the store, pick an engine.

:func:`generate` is the Python API behind ``mmreact datagen IMAGES_DIR --out DIR``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._hashing import digest
from ..errors import ConfigError
from ._stages import Prepared
from ._store import Store
from .config import DEFAULT_EXPERTS, DatagenConfig, Price, fingerprint
from .context import ContextOptions
from .prompts import KINDS, cleanup_prompt, load_prompts
from .records import Record

__all__ = ["generate", "prepare", "Prepared", "RunSummary"]


@dataclass(frozen=True)
class RunSummary:
    """What a run did (``stopped`` is ``"budget"`` when ``max_cost`` ended it early)."""

    out: str
    engine: str
    images: int
    skipped_images: int
    written: int
    accepted: int
    rejected: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    llm_calls: int
    cost: float | None
    stopped: str | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    replaced: int = 0  # images whose files changed since the records were made: made again

    def line(self) -> str:
        cost = f", ${self.cost:.4f}" if self.cost is not None else ""
        notes = [f"{self.skipped_images} already done"] if self.skipped_images else []
        if self.replaced:
            notes.append(f"{self.replaced} changed since the last run, made again")
        skipped = f" ({'; '.join(notes)})" if notes else ""
        return (f"{self.images} images{skipped}: {self.written} records written ({self.accepted} accepted, "
                f"{self.rejected} rejected, {self.errors} errors), {self.llm_calls} LLM calls, "
                f"{self.prompt_tokens + self.completion_tokens} tokens{cost}, {self.seconds:.1f} s")


def _tools(config: DatagenConfig, tools: Sequence[Any] | None) -> list[Any]:
    from ..tools.registry import resolve_tools

    if tools is not None:
        chosen = resolve_tools(list(tools))
    elif config.tools is not None:
        chosen = resolve_tools(list(config.tools))
    elif config.annotations:
        return []
    else:
        chosen = [t for t in resolve_tools(list(DEFAULT_EXPERTS)) if t.check() is None]
        if not chosen:
            raise ConfigError("None of the experts (caption, dense_caption, detect, ocr) can run on this machine; "
                              "install their weights (see `mmreact tools`) or give your own labels with --context.")
        return chosen
    for t in chosen:
        problem = t.check()
        if problem is not None:
            raise ConfigError(f"The {t.name} expert cannot run here: {problem}")
    return chosen


def _changed_images(store: Store, records: list[Record], tasks: Sequence[Any], images_dir: str | Path
                    ) -> list[str]:
    """The images of ``tasks`` whose files are not the images the store's records were made from.

    Raises :class:`ConfigError` when the run is pointed at another folder than the one that made
    the store and some of its files differ (same names, other pictures): that is a mistake to
    stop, not work to redo. In the same folder, a changed file is made again.
    """
    from ._identity import known_images, state

    known = known_images(records)
    changed = [t.image for t in tasks if t.image in known and state(t.path, known[t.image]) == "changed"]
    before = store.previous.get("images_dir")
    now = str(Path(images_dir).expanduser().resolve())
    if changed and before and before != now:
        store.restore_info()  # the folder stays the run it was
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise ConfigError(f"{store.out} holds records made from {before}, and {len(changed)} of the images of the "
                          f"same names in {now} are other pictures ({shown}); use another --out, or --fresh to "
                          "start over.")
    return changed


def prepare(images_dir: str | Path, out: str | Path, config: DatagenConfig, *, llm: Any = None,
            tools: Sequence[Any] | None = None, fresh: bool = False, retry_errors: bool = False,
            price: Price | None = None, tasks: Sequence[Any] = ()) -> Prepared:
    """Settle a run: the LLM, the experts, the prompts, and the store (resumed when it can be).

    Resuming keys on what each image is: an image whose file changed since its records were made
    (other pixels under the same name) has its records dropped and is made again; the same names
    in another folder with other pixels are refused (see :func:`_changed_images`)."""
    from ..grounding.vocab import default_vocabulary
    from ..llms import LLM, load_llm
    from ._annotations import load_annotations

    source = llm if llm is not None else config.llm
    # A function that makes the LLM (for Ray workers, which each make their own) is called here once.
    model = source() if callable(source) and not isinstance(source, (str, LLM)) else load_llm(source)
    chosen = _tools(config, tools)
    prompts = load_prompts(config.kinds, config.few_shot)
    clean = cleanup_prompt() if config.cleanup and "detail" in config.kinds else None
    digests = {k: p.digest() for k, p in prompts.items()}
    if clean is not None:
        digests["cleanup"] = clean.digest()
    fp = fingerprint(config, tools=chosen, llm_name=model.name, prompt_digests=digests)
    fp["language"] = next(iter(prompts.values())).language  # what the filters expect replies in
    fp_id = digest(fp, 12)
    annotations = load_annotations(config.annotations) if config.annotations else None
    store = Store.open(out, fp, fresh=fresh, images_dir=images_dir)
    try:
        records = store.records()
        replaced = _changed_images(store, records, tasks, images_dir)
        if replaced:
            store.drop_images(set(replaced))
            records = store.records()
    except BaseException:
        store.close()
        raise
    done, by_image = store.progress(retry_errors=retry_errors, records=records)
    seen: dict[str, str] = {}  # pixel hash -> the image that owns it (never a marked duplicate)
    for r in records:
        if r.status != "error" and r.image_sha256 and not any(x.filter == "duplicate" for x in r.reasons):
            seen.setdefault(r.image_sha256, r.image)
    return Prepared(config, store, chosen, model, source, prompts, clean, fp, fp_id, done, by_image, seen,
                    annotations, price, default_vocabulary(), replaced)


def generate(
    images_dir: str | Path,
    out: str | Path,
    *,
    kinds: Sequence[str] = KINDS,
    llm: Any = None,
    tools: Sequence[Any] | None = None,
    cleanup: bool = False,
    few_shot: str | Path | None = None,
    annotations: Sequence[str | Path] = (),
    reply_format: str = "blocks",
    context: ContextOptions | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    engine: str = "local",
    fresh: bool = False,
    retry_errors: bool = False,
    batch_size: int = 8,
    concurrency: int = 1,
    price: Price | str | None = None,
    max_cost: float | None = None,
    progress: bool = False,
    ray: dict[str, Any] | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> RunSummary:
    """Generate LLaVA-style instruction data for every image under ``images_dir`` into ``out``.

    Rerunning into the same ``out`` resumes: records already there are not made again. See
    ``mmreact datagen --help`` for the options; ``ray`` holds the Ray engine's options
    (``address``, ``expert_workers``, ``llm_workers``, ``num_gpus``, ``cpus_per_worker``).
    """
    from ._stages import scan_images
    from .config import parse_price

    if engine not in ("local", "ray"):
        raise ConfigError(f"Unknown engine '{engine}'; use local or ray.")
    if batch_size < 1 or concurrency < 1:
        raise ConfigError("batch_size and concurrency must be at least 1.")
    if isinstance(price, str):
        price = parse_price(price)
    if max_cost is not None and price is None:
        raise ConfigError("--max-cost needs --price (dollars per million input and output tokens) to count the cost.")
    config = DatagenConfig(kinds=tuple(kinds), tools=None, llm=llm if isinstance(llm, str) else None,
                           cleanup=cleanup, few_shot=None if few_shot is None else str(few_shot),
                           reply_format=reply_format, annotations=tuple(str(a) for a in annotations),
                           context=context or ContextOptions(), max_pairs=max_pairs, seed=seed)
    tasks = scan_images(images_dir, limit)
    t0 = time.perf_counter()
    prep = prepare(images_dir, out, config, llm=llm, tools=tools, fresh=fresh, retry_errors=retry_errors,
                   price=price, tasks=tasks)
    try:
        wanted = set(config.kinds)
        todo = [t for t in tasks if not wanted <= prep.done_by_image.get(t.image, set())]
        if engine == "local":
            from ._engine_local import run_local

            tally, stopped = run_local(prep, todo, batch_size=batch_size, concurrency=concurrency,
                                       max_cost=max_cost, progress=progress, on_record=on_record)
            extra: dict[str, Any] = {}
        else:
            from ._engine_ray import run_ray

            tally, stopped, extra = run_ray(prep, todo, batch_size=batch_size, max_cost=max_cost,
                                            progress=progress, **(ray or {}))
        tally.recount(prep.store.records())
    finally:
        prep.store.close()
    return RunSummary(out=str(prep.store.out), engine=engine, images=len(tasks), skipped_images=len(tasks) - len(todo),
                      written=tally.accepted + tally.rejected + tally.errors, accepted=tally.accepted,
                      rejected=tally.rejected, errors=tally.errors, prompt_tokens=tally.prompt_tokens,
                      completion_tokens=tally.completion_tokens, llm_calls=tally.llm_calls, cost=tally.cost,
                      stopped=stopped, seconds=round(time.perf_counter() - t0, 3), extra=extra,
                      replaced=len(prep.replaced))


def refilter(out: str | Path) -> Any:
    """Rerun every filter over the stored records (no model calls) and rewrite the store; returns
    the new :class:`~mmreact.datagen.report.Report`."""
    from ..grounding.vocab import default_vocabulary
    from .filters import apply_filters, mark_duplicates, mark_generic
    from .report import summarize

    store = Store.existing(out)
    try:
        vocab = default_vocabulary()
        language = store.run_info().get("fingerprint", {}).get("language", "en")
        records = mark_generic(mark_duplicates([apply_filters(r, vocab, language) for r in store.records()]))
        store.rewrite(records)
    finally:
        store.close()
    return summarize(records)

"""``mmreact datagen``: the command group (imports nothing heavy until a command runs).

``mmreact datagen IMAGES_DIR --out DIR ...`` is short for ``mmreact datagen run IMAGES_DIR ...``
(use the long form for a folder named like a subcommand).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from ..errors import MMReactError


class _RunByDefault(TyperGroup):
    """Arguments that do not start with a subcommand's name go to ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_RunByDefault, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="LLaVA-style visual instruction data from the experts' outputs: "
                       "mmreact datagen IMAGES_DIR --out DIR, then mmreact datagen export DIR.")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"mmreact: error: {message}", err=True)
    raise typer.Exit(code)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _print_report(records: Any) -> None:
    from rich.console import Console

    from .report import summarize

    console = Console(highlight=False)
    for table in summarize(records).tables():
        console.print(table)


@app.command()
def run(
    images: Annotated[str, typer.Argument(help="The folder of images (searched recursively).")],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: datagen-out/<folder>); "
                                               "rerunning into it resumes.")] = None,
    kinds: Annotated[str, typer.Option("--kinds", help="Comma-separated: conversation, detail, reasoning.")
                     ] = "conversation,detail,reasoning",
    llm: Annotated[Optional[str], typer.Option("--llm", help="LLM spec (default: the embedded SmolLM2).")] = None,
    tools: Annotated[Optional[str], typer.Option("--tools", help="Experts to run, e.g. caption,dense_caption,detect,"
                                                 "ocr (default: those ready here; none with --context).")] = None,
    cleanup: Annotated[bool, typer.Option("--cleanup", help="A second LLM pass that corrects each detailed "
                                          "description (MiniGPT-4's stage 2); raw and cleaned are both kept.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N images.")] = None,
    # "\\[": typer reads help as rich markup, which would take "[ray]" for a style tag and drop it
    engine: Annotated[str, typer.Option("--engine", help="local, or ray (Ray Data; mmreact\\[ray]).")] = "local",
    few_shot: Annotated[Optional[str], typer.Option("--few-shot", help="Prompts in LLaVA's layout: a folder with "
                                                    "conversation/, detail_description/, complex_reasoning/.")] = None,
    context: Annotated[Optional[list[str]], typer.Option("--context", help="Your own labels as the context: a JSONL "
                                                         "file or COCO captions/instances JSON (repeatable).")] = None,
    reply_format: Annotated[str, typer.Option("--reply-format", help="blocks (LLaVA's Question:/===/Answer:) or json."
                                              )] = "blocks",
    max_pairs: Annotated[Optional[int], typer.Option("--max-pairs", help="Most question/answer pairs per reply.")
                         ] = None,
    min_confidence: Annotated[float, typer.Option("--min-confidence", help="Detections below this are left out of "
                                                  "the context.")] = 0.3,
    seed: Annotated[int, typer.Option("--seed", help="Picks each description's instruction.")] = 0,
    price: Annotated[Optional[str], typer.Option("--price", help="Dollars per million input,output tokens, e.g. "
                                                 "0.15,0.60: shows the cost.")] = None,
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", help="Stop starting LLM calls past this many "
                                                      "dollars (needs --price).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="LLM calls at once (local engine).")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per expert batch.")] = 8,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete what --out holds and start over.")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="When resuming, redo records that failed.")
                            ] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join (default: "
                                                       "RAY_ADDRESS, else a local one).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Ray: expert actors and LLM actors, each.")] = 1,
    num_gpus: Annotated[float, typer.Option("--num-gpus", help="Ray: GPUs per expert actor.")] = 0.0,
    export_format: Annotated[Optional[str], typer.Option("--export", help="Also export when done: llava, sharegpt "
                                                         "or openai.")] = None,
) -> None:
    """Generate instruction data for every image in IMAGES_DIR."""
    from pathlib import Path

    from ._store import Store
    from .context import ContextOptions
    from .run import generate

    try:
        if min_confidence < 0 or min_confidence > 1:
            raise MMReactError(f"--min-confidence must be between 0 and 1, got {min_confidence:g}.")
        name = Path(images).expanduser().resolve().name or "images"
        out_dir = out or str(Path("datagen-out") / name)
        tool_list = _split(tools)
        summary = generate(
            images, out_dir, kinds=_split(kinds) or [], llm=llm, tools=tool_list, cleanup=cleanup,
            few_shot=few_shot, annotations=context or (), reply_format=reply_format,
            context=ContextOptions(min_confidence=min_confidence), max_pairs=max_pairs, seed=seed, limit=limit,
            engine=engine, fresh=fresh, retry_errors=retry_errors, batch_size=batch_size, concurrency=concurrency,
            price=price, max_cost=max_cost, progress=sys.stderr.isatty(),
            ray={"address": ray_address, "expert_workers": workers, "llm_workers": workers, "num_gpus": num_gpus}
            if engine == "ray" else None)
        records = Store.existing(out_dir).records()
        exported = None
        if export_format is not None:
            from .exports import export

            exported = export(out_dir, export_format)
    except MMReactError as exc:
        _fail(str(exc))
        return
    _print_report(records)
    typer.echo(summary.line())
    if exported is not None:
        typer.echo(exported.line())
    if summary.stopped == "budget":
        typer.echo(f"mmreact: stopped at the --max-cost budget (${max_cost:g}); rerun with a higher budget to go on.",
                   err=True)
        raise typer.Exit(1)


@app.command("export")
def export_(
    out: Annotated[str, typer.Argument(help="The folder a datagen run wrote.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="llava, sharegpt or openai.")] = "llava",
    output: Annotated[Optional[str], typer.Option("--output", help="File to write (default: OUT/<format>.json, "
                                                  "OUT/openai.jsonl).")] = None,
    kinds: Annotated[Optional[str], typer.Option("--kinds", help="Only these kinds (comma-separated).")] = None,
    image_prefix: Annotated[Optional[str], typer.Option("--image-prefix", help="Put this folder in front of image "
                                                        "paths (default: relative to the image folder).")] = None,
    image_url: Annotated[str, typer.Option("--image-url", help="openai: base64 (data URL) or path.")] = "base64",
    images: Annotated[Optional[str], typer.Option("--images", help="Where the images are now, when the folder the "
                                                  "run read moved.")] = None,
    dataset_name: Annotated[str, typer.Option("--dataset-name", help="sharegpt: the entry merged into "
                                              "dataset_info.json.")] = "mmreact_datagen",
) -> None:
    """Write the accepted records as LLaVA, ShareGPT or OpenAI training data."""
    from .exports import export

    try:
        summary = export(out, fmt, output, kinds=_split(kinds), image_prefix=image_prefix, image_url=image_url,
                         images_dir=images, dataset_name=dataset_name)
    except MMReactError as exc:
        _fail(str(exc))
        return
    typer.echo(summary.line())


@app.command()
def refilter(out: Annotated[str, typer.Argument(help="The folder a datagen run wrote.")]) -> None:
    """Rerun the quality filters over stored records (no model calls) and print the new table."""
    from .run import refilter as do_refilter

    try:
        report = do_refilter(out)
    except MMReactError as exc:
        _fail(str(exc))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for table in report.tables():
        console.print(table)


@app.command()
def report(
    out: Annotated[str, typer.Argument(help="The folder a datagen run wrote.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables.")] = False,
) -> None:
    """The accept/reject table of a run, by kind and by reason."""
    import json

    from ._store import Store
    from .report import summarize

    try:
        rep = summarize(Store.existing(out).records())
    except MMReactError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(rep.to_dict(), indent=2))
    elif markdown:
        typer.echo(rep.markdown())
    else:
        from rich.console import Console

        console = Console(highlight=False)
        for table in rep.tables():
            console.print(table)


@app.command()
def template(
    labels: Annotated[Optional[str], typer.Argument(help="A JSONL of labelled items (see docs/datagen.md).")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (export it like a datagen run).")] = "",
    images: Annotated[Optional[str], typer.Option("--images", help="The image folder the labels' paths are in.")
                      ] = None,
    from_run: Annotated[Optional[str], typer.Option("--from-run", help="Use a datagen run's expert outputs as weak "
                                                    "labels instead of a labels file.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Picks each item's template.")] = 0,
) -> None:
    """Instructions from labelled data with hand-written templates (MultiInstruct-style, no LLM)."""
    from .config import file_digest
    from .templates import items_from_file, items_from_run, make_templates

    try:
        if not out:
            raise MMReactError("Give the output folder with --out.")
        if (labels is None) == (from_run is None):
            raise MMReactError("Give either a labels file or --from-run RUN_DIR.")
        if from_run is not None:
            items, run_images = items_from_run(from_run)
            folder = images or run_images
            digest = f"run:{from_run}"
        else:
            items, folder, digest = items_from_file(labels), images, file_digest(labels)  # type: ignore[arg-type]
        if not folder:
            raise MMReactError("Give the image folder with --images.")
        written, skipped = make_templates(items, folder, out, seed=seed, labels_digest=digest)
    except MMReactError as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {written} template records to {out}" + (f" ({skipped} already there)" if skipped else ""))

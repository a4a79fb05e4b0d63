"""The command line: ``mmreact ask``, ``mmreact tools``, ``mmreact experts``.

User mistakes (missing file, not an image, unknown tool or LLM spec, unreadable script) print one
line on stderr and exit with status 2, never a traceback. A run that ends without an answer
(step limit, too many unusable replies) prints why on stderr and exits with status 1.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any, Optional

import typer

from .errors import MMReactError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="mmreact: give any text-only LLM eyes (a ReAct agent over vision experts).",
)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"mmreact: error: {message}", err=True)
    raise typer.Exit(code)


def _err_console():  # rich import only when printing to a terminal
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


LLMOpt = Annotated[Optional[str], typer.Option("--llm", help="LLM spec: default, scripted:PATH, gguf:PATH, hf:ID, openai:MODEL.")]
ToolsOpt = Annotated[Optional[str], typer.Option("--tools", help="Comma-separated tool names (default: every tool ready here).")]
AnnotatedOpt = Annotated[Optional[str], typer.Option(
    "--save-annotated", metavar="PATH", help="Write the first image with every box the tools found (PNG unless PATH says .jpg).")]


def _save_annotated(path: str, image: Any, artifacts: Any) -> None:
    """Write ``image`` with the boxes in ``artifacts`` drawn on it; a bad path is a one-line error."""
    from pathlib import Path

    from .annotate import annotate, save_image

    try:
        save_image(annotate(image, artifacts), Path(path).expanduser())
    except MMReactError as exc:
        _fail(str(exc))


@app.command()
def ask(
    args: Annotated[list[str], typer.Argument(metavar="IMAGE... QUESTION", help="One or more images, then the question.")],
    llm: LLMOpt = None,
    tools: ToolsOpt = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Model turns before giving up.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole trace as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show each step as it happens (on stderr).")] = False,
    save_annotated: AnnotatedOpt = None,
) -> None:
    """Ask a question about one or more images; print the answer."""
    from .agent import Agent
    from .display import step_text
    from .registry import parse_tool_list

    if len(args) < 2:
        _fail("give at least one image and then a question, e.g. mmreact ask photo.jpg \"What is this?\"")
    *images, question = args
    try:
        if save_annotated is not None:
            from .annotate import image_format

            image_format(save_annotated)  # a bad path fails now, not after the run
        agent = Agent(llm=llm, tools=parse_tool_list(tools), max_steps=max_steps)
        console = _err_console() if verbose else None
        if console is not None:
            from .registry import plugin_failures

            for f in plugin_failures():
                console.print(f"(skipped plug-in {f.entry_point} from {f.distribution}: {f.error})", markup=False)
            console.print(f"LLM: {agent.llm.name}; tools: {', '.join(t.name for t in agent.tools) or 'none'}",
                          markup=False)

        def on_step(step):  # noqa: ANN001
            if console is not None:
                sys.stderr.write("\n")
                console.print(step_text(step), markup=False)

        def on_text(chunk: str) -> None:
            sys.stderr.write(chunk)
            sys.stderr.flush()

        result = agent.run(question, images, on_step=on_step, on_text=on_text if verbose else None)
    except MMReactError as exc:
        trace = getattr(exc, "trace", None)
        if as_json and trace is not None:
            typer.echo(trace.to_json())
        _fail(str(exc))
        return
    if as_json:
        typer.echo(result.trace.to_json())
    elif result.answer is not None:
        typer.echo(result.answer)
    if save_annotated is not None:
        from .annotate import calls_for

        first = next(iter(result.images))
        _save_annotated(save_annotated, result.images[first], calls_for(result, first))
    if result.answer is None:
        typer.echo(f"mmreact: no answer: {result.message}", err=True)
        raise typer.Exit(1)


@app.command("tools")
def list_tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List every available tool and plug-in, and whether it can run on this machine."""
    from .registry import discover, plugin_failures

    rows = []
    for name, info in discover().items():
        try:
            problem = info.tool.check()
        except Exception as exc:  # noqa: BLE001 - a broken check is itself a status
            problem = f"check failed: {exc}"
        rows.append({"name": name, "origin": info.origin, "ready": problem is None, "missing": problem,
                     "usage": info.tool.usage(), "description": info.tool.description})
    failures = [{"entry_point": f.entry_point, "distribution": f.distribution, "error": f.error}
                for f in plugin_failures()]
    if as_json:
        typer.echo(json.dumps({"tools": rows, "failed_plugins": failures}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False)
    for col in ("tool", "ready", "from", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        ready = "yes" if r["ready"] else f"no: {r['missing']}"
        # Text, not markup: "[x1, y1, x2, y2]" in a description or message would vanish as a style tag
        table.add_row(*(Text(str(cell)) for cell in (r["usage"], ready, r["origin"], r["description"])))
    console = Console(highlight=False)
    console.print(table)
    for f in failures:
        console.print(f"plug-in failed to load and was skipped: {f['entry_point']} ({f['distribution']}): {f['error']}",
                      markup=False)


@app.command()
def experts(
    image: Annotated[str, typer.Argument(help="The image file.")],
    tools: ToolsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print observations and artifacts as JSON.")] = False,
    save_annotated: AnnotatedOpt = None,
) -> None:
    """Run tools directly on an image (no LLM) and print their observations."""
    from .images import load_image
    from .observation import Observation
    from .registry import parse_tool_list, resolve_tools

    try:
        if save_annotated is not None:
            from .annotate import image_format

            image_format(save_annotated)
        img = load_image(image)
        selected = resolve_tools(parse_tool_list(tools), ready_only=tools is None)
    except MMReactError as exc:
        _fail(str(exc))
        return
    out = []
    for t in selected:
        images = t.image_params
        required_other = [p.name for p in t.params if p.required and not p.is_image]
        if len(images) != 1 or required_other:
            obs = Observation.failure(f"{t.name} does not take exactly one image and no other required argument.")
            seconds = 0.0
        else:
            t0 = time.perf_counter()
            try:
                bound = t.bind((), {images[0]: "image_1"})
                bound[images[0]] = img
                obs = t.invoke(bound)
            except Exception as exc:  # noqa: BLE001 - shown like an agent observation
                from .errors import one_line

                obs = Observation.failure(f"{t.name} failed: {one_line(exc)}")
            seconds = time.perf_counter() - t0
        out.append({"tool": t.name, "text": obs.text, "artifact": obs.artifact, "error": obs.error,
                     "seconds": round(seconds, 4)})
    if as_json:
        typer.echo(json.dumps({"image": image, "width": img.width, "height": img.height, "results": out}, indent=2))
    else:
        for r in out:
            typer.echo(f"== {r['tool']} ({r['seconds'] * 1000:.0f} ms)")
            typer.echo(r["text"])
    if save_annotated is not None:
        _save_annotated(save_annotated, img, [r["artifact"] for r in out if not r["error"]])
    if out and all(r["error"] for r in out):
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    data: Annotated[str, typer.Argument(help="A JSONL eval set, MM-Vet's folder or mm-vet.json, or 'builtin'.")],
    system: Annotated[list[str], typer.Option("--system", "-s", help="A system to evaluate: agent, agent:LLMSPEC, an "
                                              "mmreact.mllm spec, or NAME=SPEC. Repeat to compare.")],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: eval-out/<data name>); "
                                               "rerunning into it resumes.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="Items run at once per system.")] = 1,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N items.")] = None,
    scorer: Annotated[Optional[str], typer.Option("--scorer", help="Score every item with: default, exact, contains, "
                                                  "numeric[:TOL], choice, judge[:LLMSPEC].")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over instead of resuming the results in --out.")
                     ] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="When resuming, rerun items that errored.")
                            ] = False,
) -> None:
    """Evaluate systems on an eval set; print the report and write results, Markdown, JSON and a plot."""
    from pathlib import Path

    from .eval.dataset import load_dataset, select
    from .eval.report import summarize, write_report
    from .eval.runner import RESULTS_FILE, load_system, parse_system_args, run_eval
    from .eval.scorers import get_scorer

    try:
        if concurrency < 1:
            raise MMReactError(f"--concurrency must be at least 1, got {concurrency}.")
        specs = parse_system_args(system)
        items = select(load_dataset(data), limit)
        chosen = get_scorer(scorer) if scorer is not None else None
        systems = {name: load_system(spec) for name, spec in specs.items()}
        set_name = "builtin" if data == "builtin" else (Path(data).stem if Path(data).suffix else Path(data).name)
        out_dir = Path(out) if out else Path("eval-out") / (set_name or "eval")
        results = run_eval(items, systems, out_dir, concurrency=concurrency, resume=not fresh, scorer=chosen,
                           retry_errors=retry_errors, progress=sys.stderr.isatty())
        report = summarize(results)
        paths = write_report(report, out_dir)
    except MMReactError as exc:
        _fail(str(exc))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for table in report.tables():
        console.print(table)
    files = [out_dir / RESULTS_FILE, *paths.values()]
    typer.echo("wrote " + ", ".join(str(p) for p in files))
    if "plot" not in paths:
        typer.echo("(no plot: install matplotlib for accuracy_latency.png)", err=True)


def _add_datagen() -> None:
    """``mmreact datagen ...`` (mmreact/datagen/cli.py; imports nothing heavy until a command runs)."""
    from .datagen.cli import app as datagen_app

    app.add_typer(datagen_app, name="datagen")


_add_datagen()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("mmreact: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

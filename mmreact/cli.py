"""The command line: ``mmreact ask``, ``mmreact tools``, ``mmreact pull``, ``mmreact experts``, ``mmreact eval``,
``mmreact doctor``.

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


GroundingOpt = Annotated[str, typer.Option(
    "--grounding", help="Hold answers to what the experts saw: auto, constrain (a grammar builds the answer from "
    "the observations), reask (ask once more when a fact is unsupported), check (record only), off.")]


def _save_annotated(path: str, image: Any, artifacts: Any) -> None:
    """Write ``image`` with the boxes in ``artifacts`` drawn on it; a bad path is a one-line error."""
    from pathlib import Path

    from .views.boxes import annotate, save_image

    try:
        save_image(annotate(image, artifacts), Path(path).expanduser())
    except MMReactError as exc:
        _fail(str(exc))


def _with_max_tokens(spec: str | None, max_tokens: int | None) -> str | None:
    """The LLM spec with ``--max-tokens`` as its ``max_tokens`` setting (model servers only)."""
    if max_tokens is None:
        return spec
    if not (spec or "").strip().lower().startswith("openai:"):
        raise MMReactError("--max-tokens caps the replies of a model server (--llm openai:MODEL@URL); "
                           f"the LLM here is {spec or 'default'}.")
    assert spec is not None
    if "max_tokens=" in spec.partition("?")[2]:
        raise MMReactError("Give max_tokens once: in the openai: spec or as --max-tokens, not both.")
    return f"{spec}{'&' if '?' in spec else '?'}max_tokens={max_tokens}"


def _show_llm_warnings() -> None:
    """Print each :class:`~mmreact.errors.LLMWarning` (a server that does not apply the step
    grammar) as one line on stderr, verbose or not; the backend issues each one once."""
    import warnings

    from .errors import LLMWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, LLMWarning):
            typer.echo(f"mmreact: warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


@app.command()
def ask(
    args: Annotated[list[str], typer.Argument(metavar="IMAGE... QUESTION", help="One or more images, then the question.")],
    llm: LLMOpt = None,
    tools: ToolsOpt = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Model turns before giving up.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole trace as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show each step as it happens (on stderr).")] = False,
    save_annotated: AnnotatedOpt = None,
    prefetch: Annotated[str, typer.Option("--prefetch", help="Experts to start on the images before the model "
                                          "asks: auto, none, all, or tool names (a,b).")] = "auto",
    examples: Annotated[Optional[str], typer.Option("--examples", metavar="FILE.jsonl", help="Solved examples to "
                        "show first: the eval JSONL format plus optional steps (see mmreact.fewshot).")] = None,
    grounding: GroundingOpt = "auto",
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Longest reply in tokens a model "
                          "server (openai:) may write per step (default: what the step needs, fitted to the server's "
                          "context).")] = None,
) -> None:
    """Ask a question about one or more images; print the answer."""
    from .agent import Agent
    from .tools.registry import parse_tool_list
    from .views.text import step_text

    if len(args) < 2:
        _fail("give at least one image and then a question, e.g. mmreact ask photo.jpg \"What is this?\"")
    *images, question = args
    try:
        if save_annotated is not None:
            from .views.boxes import image_format

            image_format(save_annotated)  # a bad path fails now, not after the run
        _show_llm_warnings()
        agent = Agent(llm=_with_max_tokens(llm, max_tokens), tools=parse_tool_list(tools), max_steps=max_steps,
                      prefetch=prefetch, examples=examples, grounding=grounding)
        console = _err_console() if verbose else None
        if console is not None:
            from .tools.registry import plugin_failures

            for f in plugin_failures():
                console.print(f"(skipped plug-in {f.entry_point} from {f.distribution}: {f.error})", markup=False)
            console.print(f"LLM: {agent.llm.name}; tools: {', '.join(t.name for t in agent.tools) or 'none'}",
                          markup=False)
            if agent.examples is not None:
                console.print(f"Solved examples shown first: {len(agent.examples)} from {examples}", markup=False)

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
        check = result.trace.grounding
        if check is not None and not check.supported and not verbose:  # --verbose showed it with the step
            typer.echo(f"mmreact: {check.summary()} (no observation says it)", err=True)
    if save_annotated is not None:
        from .views.boxes import calls_for

        first = next(iter(result.images))
        _save_annotated(save_annotated, result.images[first], calls_for(result, first))
    if result.answer is None:
        typer.echo(f"mmreact: no answer: {result.message}", err=True)
        raise typer.Exit(1)


@app.command("tools")
def list_tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every detail of every tool.")] = False,
) -> None:
    """List every available tool and plug-in, and whether it can run on this machine."""
    from .tools.registry import plugin_failures
    from .tools.status import render, tool_rows

    rows = tool_rows()
    failures = [{"entry_point": f.entry_point, "distribution": f.distribution, "error": f.error}
                for f in plugin_failures()]
    if as_json:
        typer.echo(json.dumps({"tools": rows, "failed_plugins": failures}, indent=2))
        return
    render(rows, failures, verbose=verbose)


@app.command()
def pull(
    experts: Annotated[Optional[list[str]], typer.Argument(
        metavar="[EXPERT]...", help="Experts whose weights to fetch (default: every built-in expert).")] = None,
    llm: Annotated[Optional[str], typer.Option("--llm", help="Fetch a transformers LLM instead: hf:MODEL_ID.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be downloaded, and its size.")] = False,
) -> None:
    """Download expert weights (or an hf: LLM) into the standard caches; sizes are shown first."""
    from .weights.pull import pull_targets, run_pull

    try:
        code = run_pull(pull_targets(experts, llm), dry_run=dry_run, out=typer.echo,
                        err=lambda m: typer.echo(m, err=True))
    except MMReactError as exc:
        _fail(str(exc))
        return
    raise typer.Exit(code)


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
    from .tools.registry import parse_tool_list, resolve_tools

    try:
        if save_annotated is not None:
            from .views.boxes import image_format

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
                                                  "numeric[:TOL], choice, judge:LLMSPEC.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over instead of resuming the results in --out.")
                     ] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="When resuming, rerun items that errored.")
                            ] = False,
    rescore: Annotated[bool, typer.Option("--rescore", help="When resuming after the scorer or the answers changed, "
                                          "score the saved predictions again (no system runs).")] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="When resuming, run again the items whose system, input, "
                                        "scorer or answers changed (with --rescore: only those it cannot rescore).")
                     ] = False,
    shots: Annotated[Optional[int], typer.Option("--shots", help="Show K solved examples before each question "
                     "(from --shots-from, else drawn from the eval set and not scored).")] = None,
    shots_from: Annotated[Optional[str], typer.Option("--shots-from", metavar="FILE", help="JSONL file of solved "
                          "examples (eval format plus optional steps); its first K are shown.")] = None,
    shots_seed: Annotated[int, typer.Option("--shots-seed", help="Seed for drawing the examples from the eval set.")
                          ] = 0,
    save_traces: Annotated[bool, typer.Option("--save-traces", help="Also write every run's trace to traces.jsonl.")
                           ] = False,
    grounding: GroundingOpt = "auto",
) -> None:
    """Evaluate systems on an eval set; print the report and write results, Markdown, JSON and a plot."""
    from dataclasses import replace
    from pathlib import Path

    from .eval.dataset import load_dataset, select
    from .eval.report import summarize, write_report
    from .eval.runner import (
        RESULTS_FILE,
        load_system,
        parse_system_args,
        read_loads,
        run_eval,
    )
    from .eval.scorers import get_scorer

    try:
        if concurrency < 1:
            raise MMReactError(f"--concurrency must be at least 1, got {concurrency}.")
        from .eval.demos import choose

        specs = parse_system_args(system)
        demos, items = choose(load_dataset(data), shots or 0, shots_from, shots_seed)
        items = select(items, limit)
        chosen = get_scorer(scorer) if scorer is not None else None
        options = {"examples": list(demos.examples)} if demos is not None else {}
        from .eval.runner import is_agent_spec

        systems = {name: load_system(spec, **options, **({"grounding": grounding} if is_agent_spec(spec) else {}))
                   for name, spec in specs.items()}
        set_name = "builtin" if data == "builtin" else (Path(data).stem if Path(data).suffix else Path(data).name)
        out_dir = Path(out) if out else Path("eval-out") / ((set_name or "eval") + (f"-{shots}shot" if shots else ""))
        results = run_eval(items, systems, out_dir, concurrency=concurrency, resume=not fresh, scorer=chosen,
                           retry_errors=retry_errors, rescore=rescore, rerun=rerun, progress=sys.stderr.isatty(),
                           save_traces=save_traces)
        report = summarize(results, read_loads(out_dir))
        if shots is not None:
            stated = {**demos.to_dict(), "sentence": demos.sentence()} if demos is not None else {
                "k": 0, "sentence": "No solved examples shown (K = 0)."}
            report = replace(report, shots=stated)
        paths = write_report(report, out_dir)
    except MMReactError as exc:
        _fail(str(exc))
        return
    from rich.console import Console

    console = Console(highlight=False)
    if report.shots is not None:
        typer.echo(report.shots["sentence"])
    for table in report.tables():
        console.print(table)
    typer.echo(report.latency_note)
    files = [out_dir / RESULTS_FILE, *paths.values()]
    typer.echo("wrote " + ", ".join(str(p) for p in files))
    if "plot" not in paths:
        typer.echo("(no plot: install matplotlib for accuracy_latency.png)", err=True)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Check this machine: CPU and llama.cpp build, the settings mmreact chose, torch, the embedded
    LLM (decoded in a child process) and each tool. Exits with 1 when the embedded LLM fails."""
    from .doctor import gather, lines

    report = gather()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for line in lines(report):
            typer.echo(line)
    if not report["default_llm"].get("ok"):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind (other than loopback needs --api-key or --insecure).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    llm: LLMOpt = None,
    tools: ToolsOpt = None,
    api_key: Annotated[Optional[list[str]], typer.Option("--api-key", envvar="MMREACT_API_KEY", help="Accepted bearer "
                       "key (repeat for several; env MMREACT_API_KEY).")] = None,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", help="Agent runs at once.")] = 4,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait; more get 429.")] = 16,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Model turns per question.")] = 8,
    model_name: Annotated[str, typer.Option("--model-name", help="The model id clients ask for.")] = "mmreact",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request, queueing included (504).")] = 300.0,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", help="Largest request body (413).")] = 32.0,
    allow_image_urls: Annotated[bool, typer.Option("--allow-image-urls", help="Fetch https image URLs (public "
                                "addresses only, no redirects, 10 MB / 10 s).")] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without an API key.")
                        ] = False,
) -> None:
    """Serve the agent as an OpenAI-compatible endpoint (POST /v1/chat/completions)."""
    try:
        from .serve._commands import serve_command

        serve_command(host=host, port=port, llm=llm, tools=tools, api_keys=api_key or [], max_steps=max_steps,
                      max_concurrency=max_concurrency, max_queue=max_queue, model_name=model_name, timeout=timeout,
                      max_body_mb=max_body_mb, allow_image_urls=allow_image_urls, insecure=insecure)
    except MMReactError as exc:
        _fail(str(exc))


@app.command()
def demo(
    llm: LLMOpt = None,
    tools: ToolsOpt = None,
    server: Annotated[Optional[str], typer.Option("--server", help="Talk to a running mmreact serve at this URL "
                      "(e.g. http://127.0.0.1:8000/v1) instead of running the agent here.")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="MMREACT_API_KEY", help="Key for --server.")
                       ] = None,
    port: Annotated[int, typer.Option("--port", help="TCP port of the web page (bound to 127.0.0.1).")] = 7860,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Model turns per question.")] = 8,
) -> None:
    """A web chat (Gradio, on 127.0.0.1): drop images, ask, watch each tool call, see the boxes."""
    try:
        from .serve._commands import demo_command

        demo_command(llm=llm, tools=tools, server=server, api_key=api_key, port=port, max_steps=max_steps)
    except MMReactError as exc:
        _fail(str(exc))


def _add_datagen() -> None:
    """``mmreact datagen ...`` (mmreact/datagen/cli.py; imports nothing heavy until a command runs)."""
    from .datagen._cli import app as datagen_app

    app.add_typer(datagen_app, name="datagen")


_add_datagen()


def main() -> None:
    import faulthandler

    # A crash inside a native library (llama.cpp, torch) then prints the Python stack that led to
    # it on stderr, instead of only "Segmentation fault".
    faulthandler.enable()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("mmreact: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

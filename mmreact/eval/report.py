"""Summaries of an eval run: per system and per capability, as a table, Markdown, JSON and a plot.

Decisions:

- Accuracy is the mean score in percent over every item, items that errored counting 0 (as
  MM-Vet does); a capability's accuracy is the mean over the items tagged with it (an item with
  two tags counts in both).
- Latency p50/p95 are over items whose system did not raise (an instant failure would flatter
  the numbers), with linear interpolation between ranks (numpy's default). How one item's latency
  is measured (models loaded first, lock waits subtracted) is :data:`.runner.LATENCY_NOTE`; it is
  printed under the tables and written into ``report.md`` and ``report.json``. Model load time is
  its own column (the newest ``load()`` of each system, from ``loads.jsonl``).
- LLM calls and tokens per item are means over the items that report them; a system without a
  trace shows "-".
- Grounded answers: the share of checked answers whose every fact the run's observations support
  (:mod:`mmreact.grounding`), overall and per capability, next to accuracy. Only answers that were
  checked count (an end-to-end model, or an agent with ``grounding="off"``, shows "-").
- The plot is drawn on an Agg canvas of its own (never ``pyplot``), so it neither needs a display
  nor changes the backend of a notebook it runs in. Without matplotlib the PNG is skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .dataset import KNOWN_CAPABILITIES
from .runner import LATENCY_NOTE, ItemResult, LoadRecord

MARKDOWN_FILE, JSON_FILE, PLOT_FILE = "report.md", "report.json", "accuracy_latency.png"
GROUNDED_TITLE = ("Grounded answers (%): of the answers checked (the agent checks each against its run's "
                  "observations, see mmreact.grounding), those whose every fact is supported; \"-\": no answer "
                  "was checked (end-to-end models, grounding off).")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; ``None`` for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


@dataclass(frozen=True)
class SystemSummary:
    name: str
    items: int
    answered: int
    errors: int
    accuracy: float
    by_capability: dict[str, float] = field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None
    llm_calls: float | None = None
    tokens: float | None = None
    #: Seconds the system's ``load()`` took before its items ran (``None``: no load recorded).
    load_seconds: float | None = None
    load_parts: dict[str, float] | None = None
    #: Share (%) of checked answers whose facts are all supported by the observations, overall and
    #: per capability (``None``: the system checks no answers, e.g. an end-to-end model).
    grounded: float | None = None
    grounded_by_capability: dict[str, float] = field(default_factory=dict)
    #: Answers that were checked (the denominator of ``grounded``).
    checked: int = 0


@dataclass(frozen=True)
class Report:
    systems: list[SystemSummary]
    #: capability -> number of items tagged with it (the same for every system).
    capabilities: dict[str, int]
    latency_note: str = LATENCY_NOTE
    #: The solved examples shown before each item (``mmreact eval --shots``; see
    #: :meth:`mmreact.eval.demos.Shots.to_dict`), with the sentence that states them; ``None``: none.
    shots: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"capabilities": self.capabilities, "systems": [asdict(s) for s in self.systems],
               "latency_note": self.latency_note}
        if self.shots is not None:
            out["shots"] = self.shots
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # -- rendering -----------------------------------------------------------------------
    def _accuracy(self) -> tuple[list[str], list[list[str]]]:
        header = ["system", "total", *(f"{c} ({n})" for c, n in self.capabilities.items())]
        rows = [[s.name, f"{s.accuracy:.1f}", *(_num(s.by_capability.get(c), ".1f") for c in self.capabilities)]
                for s in self.systems]
        return header, rows

    def _grounded(self) -> tuple[list[str], list[list[str]]]:
        header = ["system", "checked", "total", *(f"{c} ({n})" for c, n in self.capabilities.items())]
        rows = [[s.name, str(s.checked), _num(s.grounded, ".1f"),
                 *(_num(s.grounded_by_capability.get(c), ".1f") for c in self.capabilities)] for s in self.systems]
        return header, rows

    def _cost(self) -> tuple[list[str], list[list[str]]]:
        header = ["system", "items", "p50 s", "p95 s", "LLM calls", "tokens", "errors", "load s"]
        rows = [[s.name, str(s.items), _num(s.latency_p50, ".3g"), _num(s.latency_p95, ".3g"),
                 _num(s.llm_calls, ".2f"), _num(s.tokens, ".0f"), str(s.errors), _num(s.load_seconds, ".3g")]
                for s in self.systems]
        return header, rows

    def to_markdown(self) -> str:
        lines = ["# mmreact eval", ""]
        if self.shots is not None:
            lines += [str(self.shots.get("sentence") or f"Solved examples shown before each question: K = "
                                                         f"{self.shots.get('k')}."), ""]
        for title, (header, rows) in (
            ("Accuracy (%); a capability column covers the items tagged with it (their number in brackets).",
             self._accuracy()),
            (GROUNDED_TITLE, self._grounded()),
            ("Cost per item: latency in seconds, LLM calls (steps the model wrote; a step the grammar "
             "forced is written without one) and tokens; load s: the models' load time, once per run.",
             self._cost()),
        ):
            lines += [title, "", "| " + " | ".join(header) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            lines.append("")
        lines += [self.latency_note, ""]
        return "\n".join(lines)

    def tables(self) -> list[Any]:
        """Three :class:`rich.table.Table` objects: accuracy, grounded answers, then cost."""
        from rich.table import Table
        from rich.text import Text

        out = []
        titled = (("Accuracy %", self._accuracy()),
                  ("Grounded answers % (every fact supported by the observations; of the answers checked)",
                   self._grounded()),
                  ("Cost per item (latency in seconds)", self._cost()))
        for title, (header, rows) in titled:
            table = Table(title=title, title_justify="left")
            for i, col in enumerate(header):
                table.add_column(Text(col), justify="left" if i == 0 else "right", overflow="fold")
            for row in rows:
                table.add_row(*(Text(str(cell)) for cell in row))  # verbatim: names may hold "[...]"
            out.append(table)
        return out

    def plot(self, path: str | Path) -> Path | None:
        """Accuracy against median latency, one labelled point per system; ``None`` without matplotlib."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return None
        fig = Figure(figsize=(6.4, 4.4), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        points = [(s.latency_p50, s.accuracy, s.name) for s in self.systems if s.latency_p50 is not None]
        for x, y, name in points:
            ax.scatter([x], [y], s=40)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
        xs = [p[0] for p in points if p[0] > 0]
        if xs and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
            ax.margins(x=0.25)
        elif xs:
            ax.set_xlim(0, max(xs) * 1.3)  # from zero, with room for the labels
        ax.set_xlabel("median latency per item (s)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title("Accuracy against latency")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
        return out


def summarize(results: Sequence[ItemResult], loads: Mapping[str, LoadRecord] | None = None) -> Report:
    """A :class:`Report` from result records (one per system and item) and, optionally, the
    systems' load records (:func:`.runner.read_loads`)."""
    by_system: dict[str, list[ItemResult]] = {}
    for r in results:
        by_system.setdefault(r.system, []).append(r)
    cap_items: dict[str, set[str]] = {}
    for r in results:
        for c in r.capabilities:
            cap_items.setdefault(c, set()).add(r.item)
    order = [c for c in KNOWN_CAPABILITIES if c in cap_items]
    order += sorted(c for c in cap_items if c not in KNOWN_CAPABILITIES)
    summaries = []
    for name, rs in by_system.items():
        by_cap = {}
        for c in order:
            scores = [r.score for r in rs if c in r.capabilities]
            if scores:
                by_cap[c] = 100 * sum(scores) / len(scores)
        latencies = [r.seconds for r in rs if r.status != "error"]
        checked = [r for r in rs if r.grounded is not None]
        grounded_by_cap = {}
        for c in order:
            flags = [r.grounded for r in checked if c in r.capabilities]
            if flags:
                grounded_by_cap[c] = 100 * sum(bool(f) for f in flags) / len(flags)
        summaries.append(SystemSummary(
            name=name, items=len(rs), answered=sum(r.prediction is not None for r in rs),
            errors=sum(r.status in ("error", "score_error") for r in rs),
            accuracy=100 * sum(r.score for r in rs) / len(rs), by_capability=by_cap,
            latency_p50=percentile(latencies, 50), latency_p95=percentile(latencies, 95),
            llm_calls=_mean([r.llm_calls for r in rs if r.llm_calls is not None]),
            tokens=_mean([r.tokens for r in rs if r.tokens is not None]),
            load_seconds=loads[name].seconds if loads and name in loads else None,
            load_parts=loads[name].parts if loads and name in loads else None,
            grounded=100 * sum(bool(r.grounded) for r in checked) / len(checked) if checked else None,
            grounded_by_capability=grounded_by_cap, checked=len(checked),
        ))
    return Report(systems=summaries, capabilities={c: len(cap_items[c]) for c in order})


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and (with matplotlib) the PNG plot; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / MARKDOWN_FILE, "json": out / JSON_FILE}
    paths["markdown"].write_text(report.to_markdown(), encoding="utf-8")
    paths["json"].write_text(report.to_json() + "\n", encoding="utf-8")
    png = report.plot(out / PLOT_FILE)
    if png is not None:
        paths["plot"] = png
    return paths

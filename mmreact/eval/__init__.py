"""Evaluate tool-using agents against end-to-end multimodal models on the same questions.

    from mmreact.eval import load_dataset, run_eval, summarize, write_report
    items = load_dataset("builtin")                       # or a JSONL file, or MM-Vet's folder
    results = run_eval(items, {"agent": Agent(), "llava": load_system("llava:...")}, "eval-out")
    report = summarize(results); write_report(report, "eval-out")

Modules: :mod:`.dataset` (formats), :mod:`.scorers` (rule-based scorers; :mod:`.text` reads
predictions for them), :mod:`.judge` (the LLM judge), :mod:`.runner` (resumable results file),
:mod:`.fingerprint` (what produced each result), :mod:`.report` (tables and plot), :mod:`.builtin`
(the shipped set). Nothing heavy is imported.
"""

from __future__ import annotations

from .dataset import EvalItem, load_dataset, load_jsonl, load_mmvet
from .report import Report, SystemSummary, summarize, write_report
from .runner import (
    ItemResult,
    LoadRecord,
    load_system,
    read_loads,
    read_results,
    run_eval,
)
from .scorers import ScoreError, Scorer, get_scorer

__all__ = [
    "EvalItem", "load_dataset", "load_jsonl", "load_mmvet", "Report", "SystemSummary", "summarize", "write_report",
    "ItemResult", "LoadRecord", "load_system", "read_loads", "read_results", "run_eval", "Scorer", "ScoreError",
    "get_scorer",
]

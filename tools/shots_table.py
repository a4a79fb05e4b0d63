"""The K table: accuracy and tool choice for eval runs made with different numbers of solved examples.

    mmreact eval builtin --system agent --shots K --shots-from examples/shots.jsonl --fresh --save-traces \
        --out eval-out/shotsK                      # for K = 0, 1, 2
    python tools/shots_table.py eval-out/shots0 eval-out/shots1 eval-out/shots2

Reads each folder's report.json (accuracy, K) and traces.jsonl (written with --save-traces) and
prints one Markdown row per folder: accuracy overall and per capability, tool calls by tool and
image, how the steps were decided (the grammar left one choice, or the model chose among several: a
call or an answer), answers given
without any tool call, answers that repeat an example's answer word for word, and prompt tokens.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def row(folder: Path) -> dict[str, object]:
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    (system,) = report["systems"]
    shots = report.get("shots") or {"k": 0}
    traces = [json.loads(line)["trace"] for line in (folder / "traces.jsonl").read_text().splitlines() if line]
    example_answers: set[str] = set()
    if shots.get("source") and Path(shots["source"]).is_file():
        from mmreact.fewshot import load_examples

        example_answers = {e.answer.lower() for e in load_examples(shots["source"])[: shots["k"]]}
    tools: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    no_tool = copied = 0
    prompt_tokens = []
    for t in traces:
        calls = [c for s in t["steps"] for c in s["calls"]]
        tools.update(c["tool"] + ("" if not c["error"] else " (error)") for c in calls)
        for s in t["steps"]:
            kind = "answer" if s.get("final_answer") is not None else "call"
            decided[f"{kind} {'choice' if (s.get('choices') or 2) > 1 else 'no choice'}"] += 1
        if t.get("answer") is not None and not calls:
            no_tool += 1
        if t.get("answer") is not None and t["answer"].strip().lower() in example_answers:
            copied += 1
        prompt_tokens += [s["prompt_tokens"] for s in t["steps"] if s.get("prompt_tokens")]
    return {
        "K": shots["k"], "items": system["items"], "accuracy": f"{system['accuracy']:.1f}",
        **{f"{c} ({n})": f"{system['by_capability'].get(c, 0):.1f}" for c, n in report["capabilities"].items()},
        "tool calls": ", ".join(f"{k} {v}" for k, v in sorted(tools.items())) or "none",
        "call steps: no choice / chosen": f"{decided['call no choice']} / {decided['call choice']}",
        "answer steps: answer only / chosen": f"{decided['answer no choice']} / {decided['answer choice']}",
        "answered without a tool": no_tool, "copied an example's answer": copied,
        "mean prompt tokens": f"{sum(prompt_tokens) / len(prompt_tokens):.0f}" if prompt_tokens else "-",
    }


def main(folders: list[str]) -> None:
    rows = [row(Path(f)) for f in folders]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(h, "-")) for h in header) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python tools/shots_table.py EVAL_OUT_DIR [EVAL_OUT_DIR ...]")
    main(sys.argv[1:])

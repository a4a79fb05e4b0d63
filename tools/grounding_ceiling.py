"""What grounded answers can reach on an eval set: the share of items a grounded answer could get right.

Runs the experts only (no LLM): every ready tool on each item's images, then asks whether any
answer a grounded answer may be (a run of words of one piece of evidence, an option the question
offers, yes / no; see :mod:`mmreact.grounding`) scores as right. What is left out is what a
grounded answer gives up: arithmetic, knowledge, paraphrase, and text the experts misread.

    python tools/grounding_ceiling.py builtin
    python tools/grounding_ceiling.py heldout/items.jsonl
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmreact.grounding import MAX_SPAN_WORDS, answer_phrases, evidence_from_calls  # noqa: E402


def runs(phrase: tuple[str, ...]) -> list[str]:
    return [" ".join(phrase[i:j]) for i in range(len(phrase)) for j in range(i + 1, min(len(phrase), i + MAX_SPAN_WORDS) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="an eval set: builtin, a JSONL file, MM-Vet's folder")
    parser.add_argument("--tools", default=None, help="tools to run (default: every ready tool)")
    args = parser.parse_args()

    from mmreact import Agent
    from mmreact.eval.dataset import load_dataset
    from mmreact.eval.scorers import get_scorer, score_item
    from mmreact.llms.scripted import ScriptedLLM
    from mmreact.tools.registry import parse_tool_list

    items = load_dataset(args.data)
    agent = Agent(ScriptedLLM(["Final Answer: -"], repeat_last=True), tools=parse_tool_list(args.tools),
                  grounding="off", prefetch="none")
    reach: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    for it in items:
        chat = agent.chat()
        chat.images.add_all(list(it.images))
        records = []
        for t in agent.tools:
            if t.image_params:
                for handle in chat.images.handles:
                    records.append(agent._execute(t, {t.image_params[0]: handle}, f"{t.name}({handle})", chat.images))
        candidates = {r for p in answer_phrases(evidence_from_calls(records), it.question) for r in runs(p)}
        scorer = get_scorer(it.scorer)
        ok = any(score_item(scorer, c, it) >= 1.0 for c in candidates)
        for cap in ("all", *it.capabilities):
            total[cap] += 1
            reach[cap] += ok
        print(f"{'reachable' if ok else 'out of reach':12} {it.id:22} {it.question[:60]}")
    print()
    print(f"tools: {', '.join(t.name for t in agent.tools)}")
    for cap in total:
        print(f"{cap:5} {reach[cap]:3} of {total[cap]:3} items ({100 * reach[cap] / total[cap]:.0f}%) can be answered "
              "right by a grounded answer")


if __name__ == "__main__":
    main()

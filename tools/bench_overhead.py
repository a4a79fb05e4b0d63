"""Engine overhead per ReAct step: mmreact vs LangChain ``create_agent`` vs the legacy text-ReAct
``AgentExecutor`` (langchain-classic), all fed the same scripted replies and the same trivial tool,
measured side by side in one run.

    python tools/bench_overhead.py [--steps 20] [--repeats 30]

Each framework runs a question that takes ``steps`` tool steps and one final step. We report the
median wall time per step over ``repeats`` runs (the fake model and the trivial tool cost almost
nothing and are included for every framework), and for mmreact also the overhead net of the model
and tool time its trace records. Ratios are LangChain / mmreact, so larger is better for mmreact.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmreact import Agent, Image, ScriptedLLM, tool  # noqa: E402

IMAGE = np.zeros((8, 8, 3), dtype=np.uint8)


def _median_per_step(fn, steps: int, repeats: int) -> float:
    fn()  # warm-up (imports, compiled graphs, caches)
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / (steps + 1))
    return statistics.median(times)


def bench_mmreact(steps: int, repeats: int) -> tuple[float, float]:
    @tool
    def echo(image: Image, n: int) -> str:
        """Return the number given."""
        return str(n)

    replies = [f"Thought: step {i}\nAction: echo(image_1, n={i})" for i in range(steps)] + ["Final Answer: done"]
    agent = Agent(ScriptedLLM(replies), tools=[echo], max_steps=steps + 1)
    net: list[float] = []

    def run() -> None:
        agent.llm.reset()  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        result = agent.run("count", [IMAGE])
        total = time.perf_counter() - t0
        assert result.answer == "done", result.trace.pretty()
        net.append((total - result.trace.llm_seconds - result.trace.tool_seconds) / (steps + 1))

    wall = _median_per_step(run, steps, repeats)
    return wall, statistics.median(net[1:])


def bench_create_agent(steps: int, repeats: int) -> float:
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool as lc_tool

    @lc_tool
    def echo(image: str, n: int) -> str:
        """Return the number given."""
        return str(n)

    class ToolFake(FakeMessagesListChatModel):
        def bind_tools(self, tools, **kwargs):  # noqa: ANN001, ANN003
            return self

    msgs = [AIMessage(content=f"step {i}", tool_calls=[{"name": "echo", "args": {"image": "image_1", "n": i},
                                                         "id": f"c{i}"}]) for i in range(steps)]
    msgs.append(AIMessage(content="done"))

    # graph construction is outside the per-step cost: build once, reuse
    model = ToolFake(responses=msgs)
    graph = create_agent(model, [echo])

    def run_prebuilt() -> None:
        model.i = 0
        out = graph.invoke({"messages": [("user", "count")]}, {"recursion_limit": 4 * steps + 10})
        assert out["messages"][-1].content == "done"

    return _median_per_step(run_prebuilt, steps, repeats)


def bench_agent_executor(steps: int, repeats: int) -> float:
    from langchain_classic.agents import AgentExecutor, create_react_agent
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.prompts import PromptTemplate
    from langchain_core.tools import tool as lc_tool

    @lc_tool
    def echo(n: str) -> str:
        """Return the number given."""
        return str(n)

    replies = [f"Thought: step {i}\nAction: echo\nAction Input: {i}" for i in range(steps)]
    replies.append("Thought: done\nFinal Answer: done")
    prompt = PromptTemplate.from_template(
        "Answer with tools {tools} named {tool_names}.\nQuestion: {input}\n{agent_scratchpad}"
    )
    llm = FakeListLLM(responses=replies)
    executor = AgentExecutor(agent=create_react_agent(llm, [echo], prompt), tools=[echo], max_iterations=steps + 2)

    def run() -> None:
        llm.i = 0
        out = executor.invoke({"input": "count"})
        assert out["output"] == "done"

    return _median_per_step(run, steps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    mm_wall, mm_net = bench_mmreact(args.steps, args.repeats)
    ca = bench_create_agent(args.steps, args.repeats)
    ae = bench_agent_executor(args.steps, args.repeats)
    print(f"steps per run: {args.steps + 1}, runs: {args.repeats} (median per step)")
    print(f"{'framework':<34}{'per step':>12}{'LangChain / mmreact':>22}")
    print(f"{'mmreact (wall, incl. fake model+tool)':<34}{mm_wall * 1e6:>10.1f}us{'1.00x':>22}")
    print(f"{'mmreact (engine only, net)':<34}{mm_net * 1e6:>10.1f}us")
    print(f"{'langchain create_agent':<34}{ca * 1e6:>10.1f}us{ca / mm_wall:>21.1f}x")
    print(f"{'langchain-classic AgentExecutor':<34}{ae * 1e6:>10.1f}us{ae / mm_wall:>21.1f}x")
    target = min(ca, ae) / 10
    verdict = "meets" if mm_wall <= target else "MISSES"
    print(f"target: mmreact <= 1/10 of the faster LangChain path ({target * 1e6:.1f}us): {verdict} "
          f"(mmreact wall is {mm_wall / min(ca, ae):.3f} of it)")


if __name__ == "__main__":
    main()

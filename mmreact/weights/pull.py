"""``mmreact pull``: fetch expert (and ``hf:`` LLM) weights into the standard caches, sizes first.

Each target's :class:`~mmreact.weights.Weights` plans the download (the server's file sizes, what is
already here), prints one line, then fetches through its library's own downloader with progress
bars on stderr. What is already complete is not downloaded again; a hub checkpoint is checked
against the hub, so a pull also brings a cached snapshot up to date. One target failing does not
stop the others; the exit status is 1 when any failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, MMReactError
from . import Weights, human_size, policy


@dataclass(frozen=True)
class Target:
    name: str
    weights: Weights | None
    problem: str | None = None  # a package missing: reported, not fetched


def pull_targets(names: Sequence[str] | None, llm: str | None = None) -> list[Target]:
    """The experts named (every built-in expert when none is named and no ``llm``), then the LLM.

    Raises :class:`ConfigError` for an unknown name, a tool without weights, or an ``llm`` spec
    that is not ``hf:MODEL_ID``.
    """
    from ..experts.base import ExpertTool
    from ..tools.registry import BUILTIN_TOOLS, discover

    wanted = list(dict.fromkeys(n.strip() for n in (names or []) if n.strip()))
    if not wanted and not llm:
        wanted = list(BUILTIN_TOOLS)
    tools = discover()
    out = []
    for name in wanted:
        info = tools.get(name)
        if info is None:
            experts = sorted(n for n, i in tools.items() if isinstance(i.tool, ExpertTool))
            raise ConfigError(f"Unknown expert '{name}'; choose among {', '.join(experts)}.")
        tool = info.tool
        source = tool.weights() if isinstance(tool, ExpertTool) else None
        if source is None:
            raise ConfigError(f"The tool '{name}' has no weights to pull.")
        assert isinstance(tool, ExpertTool)
        out.append(Target(name, source, tool.stack_problem()))
    if llm:
        out.append(Target(llm.strip(), llm_weights(llm)))
    return out


def llm_weights(spec: str) -> Weights:
    from .hub import LLM_NEEDS, HubWeights

    text = spec.strip()
    if not text.startswith("hf:") or not text[3:].strip():
        raise ConfigError(f"--llm takes hf:MODEL_ID (a transformers model on the Hugging Face hub), not '{text}'.")
    model = text[3:].strip()
    weights = HubWeights(model, needs=LLM_NEEDS, what="language model",
                         alternative=", or give hf:DIR with a saved copy",
                         pull=f"mmreact pull --llm hf:{model}")
    if weights.is_path:
        raise ConfigError(f"hf:{model} is a folder on this machine, not a hub id: there is nothing to pull.")
    return weights


def run_pull(targets: Sequence[Target], *, dry_run: bool = False, out: Callable[[str], None] = print,
             err: Callable[[str], None] | None = None) -> int:
    """Plan and fetch each target; return the exit status (0, or 1 when any target failed)."""
    import sys

    def report(message: str) -> None:
        (err or (lambda m: print(m, file=sys.stderr)))(message)

    switch = policy.offline_switch()
    if switch:
        raise ConfigError(f"{switch} turns downloads off: unset it to pull weights.")
    failed = 0
    for target in targets:
        try:
            _pull_one(target, dry_run, out)
        except MMReactError as exc:
            report(f"mmreact: {target.name}: {exc}")
            failed += 1
    return 1 if failed else 0


def _pull_one(target: Target, dry_run: bool, out: Callable[[str], None]) -> None:
    from .hub import HubWeights

    weights = target.weights
    assert weights is not None
    if target.problem:
        raise MMReactError(target.problem)
    problem = weights.problem()
    if problem:
        raise MMReactError(problem)
    local = weights.resolved()
    if local is not None and not isinstance(weights, HubWeights):  # only the hub can have a newer copy
        out(f"{target.name}: ready: {local}")
        return
    plan = weights.plan()
    out(f"{target.name}: {weights.what}: {plan.summary()} ({plan.source})")
    if dry_run:
        for f in plan.files:
            out(f"  {f.name:<44} {human_size(f.size):>10}  {'here' if f.cached else 'to download'}")
        return
    path = weights.fetch(plan)
    out(f"{target.name}: ready: {path}")

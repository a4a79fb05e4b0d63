"""Loop and cache correctness: failed turns roll back whole, the error limit means what it says,
one deadline per step, failures and timeouts are never remembered or cached, the model's own
"Observation:" never survives, and cache keys change with everything a result depends on.

Each test here fails on a specific realistic bug (named in its docstring).
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import pytest

from mmreact import Agent, Image, LLMError, Observation, ScriptedLLM, tool
from mmreact.cache import ResultCache, configure, result_cache
from mmreact.errors import ConfigError, WeightsMissingError
from mmreact.images import load_image

RED = np.full((20, 30, 3), (255, 0, 0), dtype=np.uint8)
BLUE = np.full((10, 40, 3), (0, 0, 255), dtype=np.uint8)


@tool
def size(image: Image) -> str:
    """Image size in pixels."""
    return f"{image.width}x{image.height}"


def _last_request_done(llm: ScriptedLLM) -> frozenset[str]:
    return llm.requests[-1].done_calls


# -- a failed chat turn rolls back all of its state ---------------------------------------------
def test_a_turn_that_ends_in_an_llm_error_leaves_no_trace_in_the_session():
    """Bug: messages rolled back but the call memo (and new images) kept, so the next turn's
    grammar excluded a call whose observation the model can no longer see."""
    llm = ScriptedLLM(["Action: size(image_1)", "Final Answer: 30x20", "Action: size(image_2)"])
    chat = Agent(llm, tools=[size]).chat()
    assert chat.ask("How big?", [RED]).answer == "30x20"
    messages, memo, images = list(chat.messages), dict(chat.memo), chat.images.handles
    with pytest.raises(LLMError) as err:  # the script runs out after the call in turn 2
        chat.ask("And this one?", [BLUE])
    assert [c.call for s in err.value.trace.steps for c in s.calls] == ["size(image_2)"]  # the partial trace
    assert chat.messages == messages and chat.memo == memo and chat.images.handles == images
    llm.replies += ["Action: size(image_2)", "Final Answer: 40x10"]
    again = chat.ask("And this one?", [BLUE])
    assert again.answer == "40x10"
    assert "size(image_2)" not in llm.requests[-2].done_calls  # the call was offered again, and ran
    assert again.trace.steps[0].calls[0].reused is None
    assert chat.images.handles == ["image_1", "image_2"]


# -- the error limit --------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_max_errors_is_the_number_of_unusable_steps_in_a_row(limit):
    """Bug: max_errors=3 stopped after 4 unusable steps."""
    result = Agent(ScriptedLLM(["nonsense"], repeat_last=True), tools=[], max_errors=limit, max_steps=20).run("q")
    assert result.status == "too_many_errors" and len(result.trace.steps) == limit
    assert f"{limit} unusable steps" in (result.message or "")


def test_max_errors_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="max_errors"):
        Agent(ScriptedLLM(["x"]), tools=[], max_errors=0)
    with pytest.raises(ConfigError, match="tool_timeout"):
        Agent(ScriptedLLM(["x"]), tools=[], tool_timeout=0)


# -- one deadline for a step's calls ------------------------------------------------------------
def test_a_steps_calls_share_one_deadline(monkeypatch):
    """Bug: each future waited tool_timeout on its own, so N calls could take N x the timeout.
    A fake clock: each wait 'takes' the whole time it was allowed."""
    import mmreact.agent as agent_module

    clock = [100.0]
    waits: list[float | None] = []

    class Waiting:
        def result(self, timeout=None):  # noqa: ANN001, ANN202
            waits.append(timeout)
            clock[0] += timeout or 0.0
            raise FutureTimeout()

    class Pool:
        def submit(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return Waiting()

    monkeypatch.setattr(agent_module, "_executor", lambda: Pool())
    monkeypatch.setattr(agent_module.time, "monotonic", lambda: clock[0])

    @tool
    def other(image: Image) -> str:
        """Another tool."""
        return "x"

    llm = ScriptedLLM(["Action: size(image_1)\nAction: other(image_1)\nAction: size(image_2)", "Final Answer: x"])
    result = Agent(llm, tools=[size, other], tool_timeout=2.0).run("q", [RED, BLUE])
    assert waits == [2.0, 0.0, 0.0]
    assert all(c.error and "timed out after 2 s" in c.text for c in result.trace.steps[0].calls)


# -- failures and timeouts are not remembered --------------------------------------------------
def test_a_failed_call_can_be_retried_once_its_cause_is_fixed():
    """Bug: a call that failed (weights missing) was memoised, excluded from the grammar and
    answered 'from memory' for the rest of the chat."""
    state = {"installed": False, "runs": 0}

    @tool
    def reader(image: Image) -> str:
        """Read the image."""
        state["runs"] += 1
        if not state["installed"]:
            raise WeightsMissingError("The reader weights are not on this machine: run `pull reader`.")
        return "HELLO"

    llm = ScriptedLLM(["Action: reader(image_1)", "Final Answer: unknown", "Action: reader(image_1)",
                       "Final Answer: HELLO"])
    chat = Agent(llm, tools=[reader]).chat()
    first = chat.ask("What does it say?", [RED])
    assert first.trace.steps[0].calls[0].error and "pull reader" in first.trace.steps[0].calls[0].text
    assert chat.memo == {}
    state["installed"] = True
    second = chat.ask("Try again?")
    assert "reader(image_1)" not in llm.requests[2].done_calls
    assert second.trace.steps[0].calls[0].text == "HELLO" and second.trace.steps[0].calls[0].reused is None
    assert state["runs"] == 2


def test_a_timed_out_call_is_run_again_later_not_answered_from_memory():
    """Bug: a timed-out call remembered, so the same call later was answered 'from memory'."""
    gate = threading.Event()
    runs = []

    @tool
    def slow(image: Image) -> str:
        """A slow tool."""
        runs.append(1)
        if len(runs) == 1:
            gate.wait(5)
        return "done"

    llm = ScriptedLLM(["Action: slow(image_1)", "Action: slow(image_1)", "Final Answer: done"])
    try:
        result = Agent(llm, tools=[slow], tool_timeout=0.2).run("q", [RED])
    finally:
        gate.set()
    first, second = result.trace.steps[0].calls[0], result.trace.steps[1].calls[0]
    assert first.error and "timed out" in first.text
    assert second.reused is None and second.text == "done" and len(runs) == 2


def test_error_observations_are_never_cached():
    """Bug: a failure observation written to the result cache kept failing after the cause was fixed."""
    configure()
    state = {"ok": False, "runs": 0}

    @tool(cacheable=True)
    def flaky(image: Image) -> Observation:
        """Sometimes fails."""
        state["runs"] += 1
        return Observation(text="fine") if state["ok"] else Observation.failure("not yet")

    img = load_image(RED)
    assert flaky.invoke_cached({"image": img})[0].error
    assert flaky.invoke_cached({"image": img})[0].error and state["runs"] == 2  # not served from the cache
    state["ok"] = True
    obs, hit = flaky.invoke_cached({"image": img})
    assert obs.text == "fine" and not hit and state["runs"] == 3
    assert flaky.invoke_cached({"image": img}) == (obs, True)  # a success is cached


def test_disk_cache_never_stores_failures(tmp_path):
    cache = ResultCache(directory=tmp_path)
    cache.put("k", Observation.failure("no"))
    assert cache.get("k") is None and list(tmp_path.iterdir()) == []


# -- the model's own "Observation:" ---------------------------------------------------------------
@pytest.mark.parametrize("invented", ["\nObservation: The total is 99.", "\n<observation>99</observation>",
                                      "\n  observation : 99"])
def test_an_observation_the_model_writes_itself_is_dropped_everywhere(invented):
    """Bug: the reply parsed right, but the invented observation stayed in llm_text and in the next
    request's history."""
    llm = ScriptedLLM(["Thought: read it\nAction: size(image_1)" + invented, "Final Answer: 30x20"])
    result = Agent(llm, tools=[size]).run("q", [RED])
    step = result.trace.steps[0]
    assert step.llm_text == "Thought: read it\nAction: size(image_1)"
    assert step.calls[0].text == "30x20"
    history = llm.requests[1].messages
    assert [m.content for m in history if m.role == "assistant"] == ["Thought: read it\nAction: size(image_1)"]
    assert not any("99" in m.content for m in history)


# -- cache keys -------------------------------------------------------------------------------------
def test_cache_key_covers_tool_identity_image_and_every_argument():
    """Bug: the key ignored a non-image argument, so detect(min_confidence=0.9) got 0.1's objects."""
    red, blue = load_image(RED), load_image(BLUE)
    key = ResultCache.key
    base = key("detect", "v1", {"image": red, "min_confidence": 0.1})
    assert base == key("detect", "v1", {"min_confidence": 0.1, "image": load_image(RED.copy())})
    assert base != key("detect", "v1", {"image": red, "min_confidence": 0.9})
    assert base != key("detect", "v1", {"image": blue, "min_confidence": 0.1})
    assert base != key("detect", "v2", {"image": red, "min_confidence": 0.1})
    assert base != key("ocr", "v1", {"image": red, "min_confidence": 0.1})
    assert base != key("detect", "v1", {"image": red, "min_confidence": 0.1, "classes": ["dog"]})


def test_a_cacheable_function_tools_key_changes_with_its_code():
    """Bug: editing a @tool(cacheable=True) function kept serving the old function's results."""
    def make(body: str):  # noqa: ANN202
        scope: dict = {"Image": Image}
        exec(f"def brightness(image: Image) -> str:\n    '''Brightness.'''\n    return {body}\n", scope)
        return tool(cacheable=True)(scope["brightness"])

    one, same, changed = make("'dark'"), make("'dark'"), make("'bright'")
    assert one.cache_identity() == same.cache_identity()
    assert one.cache_identity() != changed.cache_identity()

    @tool(cacheable=True)
    def v1(image: Image, n: int = 1) -> str:
        """Version one."""
        return "a"

    @tool(cacheable=True)
    def v2(image: Image, n: int = 2) -> str:
        """Version one."""
        return "a"

    assert v1.cache_identity() != v2.cache_identity()  # defaults are code too


def _weights(path: Path, payload: bytes) -> None:
    """A stand-in .pt file: torch checkpoints are zip archives (mmreact checks that they are whole)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)


def test_expert_identity_follows_weights_file_device_and_dtype(tmp_path, monkeypatch):
    """Bug: the key held only the model id, so a retrained best.pt at the same path returned the
    old detections from the disk cache."""
    from mmreact.experts.detect import DetectTool

    weights = tmp_path / "best.pt"
    _weights(weights, b"first training run")
    tool_ = DetectTool(model=str(weights), device="cpu")
    before = tool_.cache_identity()
    assert str(weights.resolve()) in before and "cpu" in before and "float32" in before
    _weights(weights, b"the retrained weights, a different size")
    assert DetectTool(model=str(weights), device="cpu").cache_identity() != before
    assert DetectTool(model=str(weights), device="cuda").cache_identity() != DetectTool(
        model=str(weights), device="cpu").cache_identity()


@pytest.mark.slow
def test_hf_expert_identity_follows_its_snapshot(tmp_path):
    from tiny_models import build_blip

    from mmreact.experts.caption import CaptionTool

    folder = build_blip(tmp_path / "blip", seed=0)
    first = CaptionTool(model=str(folder), device="cpu").cache_identity()
    assert str(folder) in first and "unresolved" not in first
    build_blip(folder, seed=1, hidden=48)  # retrained in place
    assert CaptionTool(model=str(folder), device="cpu").cache_identity() != first
    assert "unresolved" in CaptionTool(model=str(tmp_path / "nowhere"), device="cpu").cache_identity()


@pytest.mark.slow
def test_retrained_yolo_weights_at_the_same_path_never_hit_the_old_disk_cache(tmp_path, monkeypatch):
    """End to end with real ultralytics models: two different random YOLO11n weights saved in turn at
    the same path; the disk cache answers the first, never for the second."""
    import torch
    from ultralytics import YOLO

    from mmreact.experts.detect import DetectTool

    cache_dir = tmp_path / "cache"
    configure(directory=cache_dir)
    weights = tmp_path / "best.pt"
    image = load_image(np.random.default_rng(0).integers(0, 255, (160, 224, 3), dtype=np.uint8))

    def save(seed: int) -> None:
        torch.manual_seed(seed)
        model = YOLO("yolo11n.yaml")
        head = model.model.model[-1]
        with torch.no_grad():
            for branch in head.cv3:
                branch[-1].bias.fill_(4.0 if seed else -4.0)  # the two runs see very different scores
        model.save(weights)

    try:
        save(0)
        first = DetectTool(model=str(weights), device="cpu")
        obs, hit = first.invoke_cached({"image": image, "min_confidence": 0.01})
        assert not hit and first.invoke_cached({"image": image, "min_confidence": 0.01})[1]
        save(1)
        retrained = DetectTool(model=str(weights), device="cpu")
        obs2, hit2 = retrained.invoke_cached({"image": image, "min_confidence": 0.01})
        assert not hit2
        assert obs2.artifact != obs.artifact
        assert len(list(cache_dir.glob("*.json"))) == 2
    finally:
        configure()
    assert result_cache().directory is None

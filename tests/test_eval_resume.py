"""Results that cannot be mixed: every line's fingerprint, what resuming does when it changed
(refuse in one sentence, --rescore without running a system, --rerun), and how latency is measured
(models loaded first, lock waits subtracted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image as PILImage

import mmreact
from mmreact import Agent, ScriptedLLM
from mmreact.errors import ConfigError
from mmreact.eval import load_jsonl, read_loads, read_results, run_eval, summarize, write_report
from mmreact.eval.fingerprint import system_settings
from mmreact.eval.runner import LATENCY_NOTE
from mmreact.llms.base import LLM, Completion, LLMRequest

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


def write_set(root: Path, answers: dict[str, list[str]] | None = None, question: str = "What colour is this?",
              choices: dict[str, list[str]] | None = None) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for name, rgb in COLOURS.items():
        path = root / "img" / f"{name}.png"
        if not path.exists():
            PILImage.new("RGB", (24, 16), rgb).save(path)
        line = {"id": f"colour-{name}", "images": [f"img/{name}.png"], "question": question,
                "answers": (answers or {}).get(name, [name])}
        if choices and name in choices:
            line["choices"] = choices[name]
        lines.append(line)
    data = root / "colours.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return data


class Namer:
    """Names the colour of the image file it is given, in a sentence; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, question, images):
        self.calls += 1
        return f"It is {Path(images[0]).stem}."


def lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def refusal(fn) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


# -- fingerprints ------------------------------------------------------------------------------
def test_each_line_carries_a_fingerprint_of_system_scorer_item_and_version(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))
    agent = Agent(ScriptedLLM(["Final Answer: red"], repeat_last=True), tools=[], max_steps=3)
    run_eval(items, {"a": agent}, tmp_path / "out", scorer="exact", progress=False)
    fp = lines(tmp_path / "out")[0]["fingerprint"]
    assert fp["mmreact"] == mmreact.__version__ and fp["scorer"] == "exact@2"
    assert fp["system"] == system_settings(agent)
    assert fp["system"]["type"] == "mmreact.Agent" and fp["system"]["max_steps"] == 3
    assert fp["system"]["llm"]["name"] == "scripted" and len(fp["system"]["system_prompt"]) == 16
    assert set(fp["item"]) == {"input", "key"}
    inputs = {x["fingerprint"]["item"]["input"] for x in lines(tmp_path / "out")}
    assert len(inputs) == 3  # different images


def test_system_settings_come_from_eval_settings_when_a_system_has_it():
    class Tuned:
        def __init__(self, temperature: float) -> None:
            self.temperature = temperature
            self.examples = ["Q: a\nA: b"] * 40

        def eval_settings(self) -> dict:
            return {"temperature": self.temperature, "examples": self.examples, "prompt": "x" * 500}

        def run(self, question, images):
            return "red"

    settings = system_settings(Tuned(0.2))
    assert settings["temperature"] == 0.2
    assert settings["examples"].startswith("sha256:") and settings["prompt"].startswith("sha256:")
    assert system_settings(Tuned(0.2)) == settings != system_settings(Tuned(0.3))


def test_plain_systems_are_fingerprinted_by_class_and_known_settings_only():
    class Model:
        def __init__(self) -> None:
            self.name, self.max_new_tokens, self.seen = "m", 64, 0  # 'seen' is run-time state

        def run(self, question, images):
            self.seen += 1
            return "red"

    m = Model()
    before = system_settings(m)
    m.run("q", [])
    assert system_settings(m) == before == {"type": f"{__name__}.{type(m).__qualname__}", "name": "m",
                                            "max_new_tokens": 64}


# -- resuming after a change -----------------------------------------------------------------------
def test_changed_scorer_refuses_then_rescore_runs_no_system(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))
    out, namer = tmp_path / "out", Namer()
    first = run_eval(items, {"n": namer}, out, scorer="exact", progress=False)
    assert [r.score for r in first] == [0.0] * 3 and namer.calls == 3  # "It is red." is not exactly "red"
    message = refusal(lambda: run_eval(items, {"n": namer}, out, scorer="contains", progress=False))
    assert message.startswith(f"{out / 'results.jsonl'} holds 3 results made differently from this run: ")
    assert "the scorer of 3 items changed (exact@2 -> contains@2)" in message and "--rescore" in message
    assert len(lines(out)) == 3 and namer.calls == 3  # nothing ran, nothing written

    again = run_eval(items, {"n": namer}, out, scorer="contains", rescore=True, progress=False)
    assert namer.calls == 3  # rescored from the saved predictions
    assert [(r.score, r.prediction, r.status) for r in again] == [(1.0, f"It is {c}.", "answered") for c in COLOURS]
    assert [x["fingerprint"]["scorer"] for x in lines(out)] == ["exact@2"] * 3 + ["contains@2"] * 3
    assert [r.seconds for r in again] == [r.seconds for r in first]  # the measured run is kept
    run_eval(items, {"n": namer}, out, scorer="contains", progress=False)  # now everything matches
    assert namer.calls == 3 and len(lines(out)) == 6


def test_changed_answers_or_choices_refuse_then_rescore_only_those(tmp_path):
    root = tmp_path / "set"
    out, namer = tmp_path / "out", Namer()
    run_eval(load_jsonl(write_set(root)), {"n": namer}, out, progress=False)
    corrected = load_jsonl(write_set(root, answers={"red": ["crimson"]}))
    message = refusal(lambda: run_eval(corrected, {"n": namer}, out, progress=False))
    assert "the answers or choices of 1 item changed (e.g. 'colour-red')" in message and "--rescore" in message
    results = run_eval(corrected, {"n": namer}, out, rescore=True, progress=False)
    assert namer.calls == 3 and [r.score for r in results] == [0.0, 1.0, 1.0]
    assert [x["item"] for x in lines(out)[3:]] == ["colour-red"]  # only the changed item got a new line

    with_choices = load_jsonl(write_set(root, answers={"red": ["crimson"]}, choices={"green": ["green", "blue"]}))
    assert "answers or choices of 1 item changed (e.g. 'colour-green')" in refusal(
        lambda: run_eval(with_choices, {"n": namer}, out, progress=False))


def test_changed_system_spec_refuses_even_with_rescore_and_reruns_with_rerun(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(["Final Answer: red"] * 3))
    b.write_text(json.dumps(["Final Answer: green"] * 3))
    out = tmp_path / "out"

    def agent(script: Path, **kw) -> Agent:  # what `--system agent:scripted:PATH` builds, without tools
        return Agent(ScriptedLLM.from_file(script), tools=[], **kw)

    run_eval(items, {"agent": agent(a)}, out, progress=False)
    for resc in (False, True):
        message = refusal(lambda: run_eval(items, {"agent": agent(b)}, out, rescore=resc, progress=False))
        assert "system 'agent' changed (llm.name 'scripted:a.json' -> 'scripted:b.json')" in message
        assert "--rerun" in message and len(lines(out)) == 3
    results = run_eval(items, {"agent": agent(b)}, out, rerun=True, progress=False)
    assert [r.prediction for r in results] == ["green"] * 3 and len(lines(out)) == 6
    fewer = agent(b, max_steps=2)
    assert "max_steps 8 -> 2" in refusal(lambda: run_eval(items, {"agent": fewer}, out, progress=False))


def test_changed_image_or_question_needs_a_rerun_of_that_item_only(tmp_path):
    root = tmp_path / "set"
    items = load_jsonl(write_set(root))
    out, namer = tmp_path / "out", Namer()
    run_eval(items, {"n": namer}, out, progress=False)
    PILImage.new("RGB", (24, 16), (200, 30, 30)).save(root / "img" / "red.png")  # other pixels, same name
    message = refusal(lambda: run_eval(items, {"n": namer}, out, rescore=True, progress=False))
    assert "the question or images of 1 item changed (e.g. 'colour-red')" in message and "--rerun" in message
    run_eval(items, {"n": namer}, out, rerun=True, progress=False)
    assert namer.calls == 4 and [x["item"] for x in lines(out)[3:]] == ["colour-red"]
    reworded = load_jsonl(write_set(root, question="Which colour fills this image?"))
    assert "question or images of 3 items" in refusal(lambda: run_eval(reworded, {"n": namer}, out, progress=False))


def test_rescore_and_rerun_together_rescore_what_they_can(tmp_path):
    root = tmp_path / "set"
    out, namer = tmp_path / "out", Namer()
    run_eval(load_jsonl(write_set(root)), {"n": namer}, out, progress=False)
    PILImage.new("RGB", (24, 16), (10, 10, 230)).save(root / "img" / "blue.png")
    changed = load_jsonl(write_set(root, answers={"green": ["lime"]}))
    message = refusal(lambda: run_eval(changed, {"n": namer}, out, progress=False))
    assert "answers or choices of 1 item" in message and "question or images of 1 item" in message
    results = run_eval(changed, {"n": namer}, out, rescore=True, rerun=True, progress=False)
    assert namer.calls == 4  # blue ran again; green was rescored
    assert [r.score for r in results] == [1.0, 0.0, 1.0]


def test_old_lines_without_fingerprint_and_another_version_are_not_mixed(tmp_path, monkeypatch):
    items = load_jsonl(write_set(tmp_path / "set"))
    out, namer = tmp_path / "out", Namer()
    out.mkdir()
    old = {"system": "n", "item": "colour-red", "prediction": "red", "score": 1.0, "status": "answered",
           "seconds": 1.0, "capabilities": []}
    (out / "results.jsonl").write_text(json.dumps(old) + "\n")
    message = refusal(lambda: run_eval(items, {"n": namer}, out, rescore=True, progress=False))
    assert "no fingerprint (written by an older mmreact)" in message and namer.calls == 0
    run_eval(items, {"n": namer}, out, rerun=True, progress=False)
    assert namer.calls == 3
    version = mmreact.__version__
    monkeypatch.setattr(mmreact, "__version__", "9.9.9")
    message = refusal(lambda: run_eval(items, {"n": namer}, out, progress=False))
    assert f"system 'n' changed (mmreact {version} -> 9.9.9)" in message


def test_fresh_starts_over(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))
    out, namer = tmp_path / "out", Namer()
    run_eval(items, {"n": namer}, out, scorer="exact", progress=False)
    run_eval(items, {"n": namer}, out, scorer="contains", resume=False, progress=False)
    assert namer.calls == 6 and [x["fingerprint"]["scorer"] for x in lines(out)] == ["contains@2"] * 3


# -- the command line ----------------------------------------------------------------------------
def mmreact_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cwd)


def test_cli_refuses_a_changed_scorer_and_rescore_makes_no_model_call(tmp_path):
    data = write_set(tmp_path / "set")
    script = tmp_path / "three.json"  # exactly three replies: a fourth model call would fail the item
    script.write_text(json.dumps(["Final Answer: It is red.", "Final Answer: green", "Final Answer: blue"]))
    base = ["eval", str(data), "--system", f"s=agent:scripted:{script}", "--out", "out"]
    first = mmreact_cli(*base, "--scorer", "exact", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert LATENCY_NOTE in first.stdout.replace("\n", " ") or "Latency is the wall-clock time" in first.stdout
    changed = mmreact_cli(*base, "--scorer", "contains", cwd=tmp_path)
    err = [x for x in changed.stderr.splitlines() if x.strip()]
    assert changed.returncode == 2 and len(err) == 1 and "Traceback" not in changed.stderr
    assert "scorer of 3 items changed (exact@2 -> contains@2)" in err[0] and "--rescore" in err[0]
    rescored = mmreact_cli(*base, "--scorer", "contains", "--rescore", cwd=tmp_path)
    assert rescored.returncode == 0, rescored.stderr
    newest = {x["item"]: x for x in lines(tmp_path / "out")}
    assert [newest[f"colour-{c}"]["score"] for c in COLOURS] == [1.0, 1.0, 1.0]
    assert {x["status"] for x in newest.values()} == {"answered"}  # no call ran out of replies
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["systems"][0]["accuracy"] == pytest.approx(100.0) and report["latency_note"] == LATENCY_NOTE


# -- latency -------------------------------------------------------------------------------------
class SlowLoading:
    """Loads for a while (as a model would), then answers at once."""

    def __init__(self) -> None:
        self.loads = 0
        self.loaded = False

    def load(self) -> dict:
        time.sleep(1.0)
        self.loads += 1
        self.loaded = True
        return {"model": 1.0}

    def run(self, question, images):
        assert self.loaded, "run before load"
        return "red"


def test_models_load_before_the_clock_and_load_time_is_reported_apart(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))
    system = SlowLoading()
    results = run_eval(items, {"slow": system, "plain": Namer()}, tmp_path, progress=False)
    assert system.loads == 1 and all(r.seconds < 1.0 for r in results if r.system == "slow")  # an instant run
    loads = read_loads(tmp_path)
    assert set(loads) == {"slow"} and loads["slow"].seconds >= 1.0 and loads["slow"].parts == {"model": 1.0}
    report = summarize(results, loads)
    by = {s.name: s for s in report.systems}
    assert by["slow"].load_seconds == loads["slow"].seconds and by["plain"].load_seconds is None
    md = write_report(report, tmp_path)["markdown"].read_text()
    assert "| load s |" in md and LATENCY_NOTE in md
    run_eval(items, {"slow": system}, tmp_path, progress=False)  # nothing left to run: no load
    assert system.loads == 1


def test_an_agent_is_loaded_once_before_its_items(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))

    class CountingLLM(ScriptedLLM):
        loads = 0

        def load(self) -> None:
            type(self).loads += 1

    agent = Agent(CountingLLM(["Final Answer: red"], repeat_last=True), tools=[])
    run_eval(items, {"a": agent}, tmp_path, concurrency=2, progress=False)
    assert CountingLLM.loads == 1 and set(read_loads(tmp_path)["a"].parts) == {"llm"}


class LockedLLM(LLM):
    """One model shared by threads: a lock around each reply, and the wait for it reported, as the
    local backends do (``Completion.wait_seconds``)."""

    name = "locked"

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def complete(self, request: LLMRequest) -> Completion:
        t0 = time.perf_counter()
        with self.lock:
            waited = time.perf_counter() - t0
            time.sleep(0.15)
            return Completion(text="Final Answer: red", wait_seconds=waited)


def test_time_waiting_for_a_shared_model_lock_is_not_latency(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))
    barrier = threading.Barrier(3)
    agent = Agent(LockedLLM(), tools=[])
    traces = {}

    class Together:
        """The agent, with the three items released at the same moment."""

        def run(self, question, images):
            barrier.wait(timeout=10)
            result = agent.run(question, images)
            traces[Path(images[0]).stem] = result.trace
            return result

    results = run_eval(items, {"t": Together()}, tmp_path, concurrency=3, progress=False)
    assert Counter(x["status"] for x in lines(tmp_path)) == {"answered": 3}
    assert max(r.wait_seconds for r in results) >= 0.25  # the last one waited for two 0.15 s replies
    for r in results:
        trace = traces[r.item.removeprefix("colour-")]
        assert r.wait_seconds == pytest.approx(trace.llm_wait_seconds)
        assert r.llm_seconds == pytest.approx(trace.llm_seconds - trace.llm_wait_seconds)


def test_a_trace_that_reports_waiting_has_it_subtracted(tmp_path):
    items = load_jsonl(write_set(tmp_path / "set"))[:1]

    class Waited:
        """A result whose trace says its one model call waited 5 s for a lock."""

        def run(self, question, images):
            from mmreact.trace import StepRecord, Trace

            step = StepRecord(index=1, llm_text="Final Answer: red", final_answer="red", llm_seconds=5.01,
                              llm_wait_seconds=5.0)
            return type("R", (), {"answer": "red", "trace": Trace(question=question, steps=(step,), answer="red")})()

    (r,) = run_eval(items, {"w": Waited()}, tmp_path, progress=False)
    assert r.wait_seconds == 5.0 and r.seconds == 0.0 and r.llm_seconds == pytest.approx(0.01)
    assert read_results(tmp_path / "results.jsonl")[0].wait_seconds == 5.0

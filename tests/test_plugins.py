"""Plug-ins through the ``mmreact.tools`` entry-point group; a broken one is skipped."""

from __future__ import annotations

import numpy as np
import pytest

from mmreact import Agent, ScriptedLLM
from mmreact.errors import ToolNotFoundError
from mmreact.tools.registry import discover, plugin_failures, resolve_tools

from plugin_fixture import make_plugins


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    from mmreact.llms import backends
    from mmreact.mllm import systems

    monkeypatch.syspath_prepend(str(make_plugins(tmp_path)))
    discover(refresh=True), backends(refresh=True), systems(refresh=True)
    yield tmp_path
    monkeypatch.undo()
    discover(refresh=True), backends(refresh=True), systems(refresh=True)


def test_plugins_load_and_broken_one_is_skipped(plugins):
    found = discover()
    assert found["pixel_count"].origin == "plugin:mmreact_demo_plugin"
    assert "corner_colour" in found
    broken = [f for f in plugin_failures() if f.distribution == "mmreact_broken_plugin"]
    assert len(broken) == 1 and "this_package_does_not_exist_anywhere" in broken[0].error


def test_agent_uses_plugin_tools_by_name(plugins):
    llm = ScriptedLLM(["Action: pixel_count(image_1)\nAction: corner_colour(image_1)", "Final Answer: 12"])
    result = Agent(llm, tools=["pixel_count", "corner_colour"]).run("How many pixels?", [np.zeros((3, 4, 3), np.uint8)])
    assert [c.text for c in result.trace.steps[0].calls] == ["12 pixels", "(0, 0, 0)"]


def test_unknown_tool_names_are_user_errors():
    with pytest.raises(ToolNotFoundError, match="Unknown tool 'teleport'; available tools:"):
        resolve_tools(["teleport"])


# -- LLM backends and end-to-end systems by entry point --------------------------------------
def test_a_third_party_backend_works_from_a_spec_and_built_ins_cannot_be_replaced(plugins):
    from mmreact.errors import ConfigError
    from mmreact.llms import backend_failures, backends, load_llm
    from mmreact.llms.openai import OpenAILLM

    found = backends()
    assert found["echo"].distribution == "mmreact_demo_backend" and found["gguf"].builtin
    result = Agent("echo:twelve", tools=[]).run("How many?")
    assert result.answer == "twelve" and result.trace.llm == "echo:twelve"
    assert isinstance(load_llm("openai:m@http://127.0.0.1:9/v1"), OpenAILLM)  # the built-in keeps its name
    taken = [f for f in backend_failures() if f.distribution == "mmreact_demo_backend"]
    assert len(taken) == 1 and "'openai' is already taken" in taken[0].error
    with pytest.raises(ConfigError, match=r"The LLM backend 'broken' from the package mmreact_broken_plugin failed "
                                          r"to load \(ModuleNotFoundError"):
        load_llm("broken:x")
    with pytest.raises(ConfigError, match="returned a str, not an mmreact.llms.base.LLM"):
        load_llm("stringly:x")
    with pytest.raises(ConfigError, match=r"Unknown LLM spec 'nope:x'; use one of: .*echo:\.\.\."):
        load_llm("nope:x")


def test_a_third_party_backend_from_the_command_line(plugins, tiny_png):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(plugins) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "mmreact", "ask", str(tiny_png), "How many?", "--llm", "echo:42",
                           "--tools", "pixel_count"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "42", proc.stderr


def test_a_third_party_system_loads_by_its_prefix(plugins):
    from mmreact.mllm import load_system, systems

    assert systems()["shout"].distribution == "mmreact_demo_backend"
    assert load_system("shout:!").run("hello", []).answer == "HELLO!"

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
    monkeypatch.syspath_prepend(str(make_plugins(tmp_path)))
    discover(refresh=True)
    yield
    monkeypatch.undo()
    discover(refresh=True)


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

"""mmreact tools as LangChain tools: langchain-tests' standard suites, tool calls, an agent run."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures import render_receipt, solid

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import BaseTool  # noqa: E402
from langchain_tests.integration_tests import ToolsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import ToolsUnitTests  # noqa: E402

from mmreact import Image, tool  # noqa: E402
from mmreact.experts.detect import DetectTool  # noqa: E402
from mmreact.experts.ocr import OCRTool  # noqa: E402
from mmreact.images import ImageTable  # noqa: E402
from mmreact.tools.langchain import as_langchain_tool, langchain_tools  # noqa: E402


@tool
def mean_colour(image: Image, channel: str = "r") -> dict:
    """Mean value (0-255) of one colour channel of the image.

    Args:
        image: the image to measure
        channel: one of r, g, b
    """
    if channel not in ("r", "g", "b"):
        raise ValueError(f"channel must be r, g or b, not {channel!r}")
    return {"channel": channel, "mean": float(np.asarray(image.pil)[..., "rgb".index(channel)].mean())}


@functools.cache
def _files() -> dict[str, str]:
    folder = Path(tempfile.mkdtemp(prefix="mmreact-lc-"))
    red = folder / "red.png"
    solid((255, 0, 0), (32, 32)).save(red)
    return {"receipt": str(render_receipt().save(folder / "receipt.png")), "red": str(red)}


@functools.cache
def _ocr() -> OCRTool:
    return OCRTool(languages=["en"], device="cpu")


#: langchain-tests' async tests need pytest-asyncio's mark; its sync siblings get it too and would warn.
ASYNC_SUITE = [pytest.mark.asyncio,
               pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")]


def _call(lc_tool: BaseTool, **args: Any) -> ToolMessage:
    return lc_tool.invoke({"name": lc_tool.name, "args": args, "id": "call_1", "type": "tool_call"})


# -- langchain-tests standard suites -------------------------------------------------------
class _MeanColourParams:
    @property
    def tool_constructor(self) -> BaseTool:
        return as_langchain_tool(mean_colour)

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"image": _files()["red"], "channel": "r"}


class _OCRParams:
    @property
    def tool_constructor(self) -> BaseTool:
        return as_langchain_tool(_ocr())

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"image": _files()["receipt"]}


class TestMeanColourUnit(_MeanColourParams, ToolsUnitTests):
    pass


class TestMeanColourIntegration(_MeanColourParams, ToolsIntegrationTests):
    pytestmark = ASYNC_SUITE


class TestOCRUnit(_OCRParams, ToolsUnitTests):
    pass


@pytest.mark.slow
class TestOCRIntegration(_OCRParams, ToolsIntegrationTests):
    pytestmark = ASYNC_SUITE


# -- content and artifact ------------------------------------------------------------------
@pytest.mark.slow
def test_ocr_tool_call_gives_content_and_artifact() -> None:
    lc = as_langchain_tool(_ocr())
    assert lc.response_format == "content_and_artifact"
    assert lc.tool_call_schema.model_json_schema()["required"] == ["image"]
    msg = _call(lc, image=_files()["receipt"])
    assert isinstance(msg, ToolMessage) and msg.status == "success" and msg.tool_call_id == "call_1"
    assert "TOTAL 7.75" in msg.content
    assert "TOTAL 7.75" in [line["text"] for line in msg.artifact["lines"]]
    json.dumps(msg.artifact)  # artifacts are plain JSON data


def test_schema_comes_from_the_mmreact_tool() -> None:
    lc = as_langchain_tool(mean_colour)
    schema = lc.tool_call_schema.model_json_schema()
    assert lc.name == "mean_colour" and lc.description.startswith("Mean value (0-255)")
    assert schema["properties"]["image"]["type"] == "string"
    assert "path of an image file" in schema["properties"]["image"]["description"]
    assert schema["properties"]["channel"] == {"default": "r", "description": "one of r, g, b",
                                               "title": "Channel", "type": "string"}
    assert schema["required"] == ["image"]


def test_handles_resolve_through_an_image_table() -> None:
    table = ImageTable()
    handle = table.add(solid((0, 0, 200), (16, 16)))
    lc = as_langchain_tool(mean_colour, images=table)
    assert "image handle" in lc.tool_call_schema.model_json_schema()["properties"]["image"]["description"]
    msg = _call(lc, image=handle, channel="b")
    assert msg.status == "success" and msg.artifact == {"channel": "b", "mean": 200.0}
    assert _call(lc, image=_files()["red"]).artifact["mean"] == 255.0  # paths still work
    missing = _call(lc, image="image_9")
    assert missing.status == "error" and "image_9" in missing.content and missing.artifact is None


def test_mistakes_come_back_as_content() -> None:
    lc = as_langchain_tool(mean_colour)
    cases = {
        "no file": ({"image": "/nonexistent/x.png"}, "No such image file: /nonexistent/x.png"),
        "bad argument": ({"image": _files()["red"], "colour": "r"}, "bad arguments for mean_colour"),
        "missing argument": ({}, "image"),
        "tool raised": ({"image": _files()["red"], "channel": "x"}, "mean_colour failed: ValueError"),
    }
    for name, (args, expected) in cases.items():
        msg = _call(lc, **args)
        assert msg.status == "error", name
        assert msg.content.startswith("Error: ") and expected in msg.content, (name, msg.content)


def test_missing_weights_come_back_as_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMREACT_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.delenv("MMREACT_ALLOW_DOWNLOAD", raising=False)
    lc = as_langchain_tool(DetectTool(model="yolo11n.pt"))
    msg = _call(lc, image=_files()["red"])
    assert msg.status == "error" and "detect could not run" in msg.content and "yolo11n.pt" in msg.content


def test_langchain_tools_by_name() -> None:
    (lc,) = langchain_tools(["ocr"])
    assert lc.name == "ocr" and isinstance(lc, BaseTool)
    assert [t.name for t in langchain_tools([mean_colour])] == ["mean_colour"]


def test_import_mmreact_does_not_import_langchain() -> None:
    import subprocess
    import sys

    code = "import sys, mmreact; print('langchain_core' in sys.modules, 'mmreact.tools.langchain' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- a LangChain agent calling the tool ----------------------------------------------------
@pytest.mark.slow
def test_langchain_agent_gets_content_and_artifact() -> None:
    agents = pytest.importorskip("langchain.agents")
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class ToolCallingFake(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
            return self

    receipt = _files()["receipt"]
    model = ToolCallingFake(messages=iter([
        AIMessage(content="", tool_calls=[
            {"name": "ocr", "args": {"image": receipt}, "id": "c1", "type": "tool_call"}]),
        AIMessage(content="The total is 7.75."),
    ]))
    agent = agents.create_agent(model, tools=[as_langchain_tool(_ocr())])
    state = agent.invoke({"messages": [HumanMessage(f"What is the total on {receipt}?")]})
    (tool_msg,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert tool_msg.name == "ocr" and "TOTAL 7.75" in tool_msg.content
    assert "TOTAL 7.75" in [line["text"] for line in tool_msg.artifact["lines"]]
    assert state["messages"][-1].content == "The total is 7.75."

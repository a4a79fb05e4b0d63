"""Declaring tools: schema from signature and docstring, checked at registration."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import pytest

from mmreact import Image, Observation, Tool, tool
from mmreact.errors import ToolDefinitionError
from mmreact.tools import ArgumentError


def test_decorated_function_schema():
    @tool
    def crop_text(image: Image, region: Literal["top", "bottom"] = "top", limit: int = 5) -> str:
        """Read text in part of the image.

        Args:
            image: the picture
            region: which half to read
            limit: at most this many lines
        """
        return f"{region}:{limit}:{image.width}"

    assert crop_text.name == "crop_text"
    assert crop_text.description == "Read text in part of the image."
    assert crop_text.usage() == "crop_text(image: image, region: 'top'|'bottom' = 'top', limit: int = 5)"
    schema = crop_text.json_schema()
    assert schema["required"] == ["image"]
    assert schema["properties"]["region"]["enum"] == ["top", "bottom"]
    assert "image handle" in schema["properties"]["image"]["description"]
    assert schema["properties"]["limit"]["description"] == "at most this many lines"
    assert crop_text.bind(("image_1",), {"limit": "3"}) == {"image": "image_1", "region": "top", "limit": 3}
    assert crop_text.canonical(crop_text.bind(("image_1",))) == "crop_text(image_1)"
    assert crop_text.canonical(crop_text.bind(("image_2", "bottom"))) == "crop_text(image_2, region='bottom')"
    # direct Python call takes a real image
    out = crop_text(np.zeros((4, 9, 3), dtype=np.uint8), region="bottom")
    assert out == Observation(text="bottom:5:9")


def test_decorator_with_options_and_class_tools():
    @tool(name="shout", description="Upper-case some text.")
    def _impl(text: str, times: Optional[int] = None) -> str:
        return text.upper() * (times or 1)

    assert _impl.name == "shout" and _impl(text="hi", times=2).text == "HIHI"

    class Counter(Tool):
        """Count pixels brighter than a threshold."""

        name = "count_bright"

        def run(self, image: Image, threshold: float = 0.5) -> Observation:
            n = int((image.to_numpy().mean(axis=2) > threshold * 255).sum())
            return Observation(text=f"{n} bright pixels", artifact={"count": n})

    t = Counter()
    assert t.description == "Count pixels brighter than a threshold."
    assert t.usage() == "count_bright(image: image, threshold: float = 0.5)"
    assert t(np.full((2, 3, 3), 255, dtype=np.uint8)).artifact == {"count": 6}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tool(lambda image: "x"), "tool '<lambda>'"),
        (lambda: tool(name="bad name")(lambda: "x"), "must be a Python identifier"),
    ],
)
def test_definition_errors_name_the_tool(make, message):
    with pytest.raises(ToolDefinitionError, match=message):
        make()


def test_definition_errors():
    def no_annotation(image):
        """Doc."""

    with pytest.raises(ToolDefinitionError, match="tool 'no_annotation': parameter 'image' has no type annotation"):
        tool(no_annotation)

    def no_doc(image: Image) -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="tool 'no_doc': it needs a description"):
        tool(no_doc)

    def star(*images: Image) -> str:
        """Doc."""

    with pytest.raises(ToolDefinitionError, match=r"tool 'star': \*args/\*\*kwargs are not allowed"):
        tool(star)

    def weird(image: Image, data: set) -> str:
        """Doc."""

    with pytest.raises(ToolDefinitionError, match="tool 'weird': parameter 'data' has unsupported type"):
        tool(weird)

    def default_image(image: Image = None) -> str:  # type: ignore[assignment]
        """Doc."""

    with pytest.raises(ToolDefinitionError, match="cannot have a default"):
        tool(default_image)

    class Nameless(Tool):
        """Doc."""

        def run(self, x: int) -> str:
            return ""

    with pytest.raises(ToolDefinitionError, match="must be a Python identifier"):
        Nameless()


def test_bind_errors_are_for_the_model():
    @tool
    def f(image: Image, k: int = 1) -> str:
        """Doc."""
        return ""

    with pytest.raises(ArgumentError, match="at most 2 arguments"):
        f.bind(("image_1", 2, 3))
    with pytest.raises(ArgumentError, match="two values for 'image'"):
        f.bind(("image_1",), {"image": "image_2"})
    with pytest.raises(ArgumentError, match=r"k: .*Usage: f\(image: image, k: int = 1\)"):
        f.bind(("image_1",), {"k": "many"})


def test_observation_coercion():
    assert Observation.coerce("x") == Observation("x")
    obs = Observation.coerce({"boxes": np.array([[1, 2, 3, 4]])})
    assert obs.artifact == {"boxes": [[1, 2, 3, 4]]} and '"boxes"' in obs.text
    assert Observation.coerce(None).text == "(no output)"

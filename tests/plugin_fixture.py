"""Builds installed-looking distributions with ``mmreact.tools``, ``mmreact.llms`` and
``mmreact.systems`` entry points in a folder (plug-ins a third party would ship)."""

from __future__ import annotations

from pathlib import Path

GOOD_MODULE = '''
from mmreact import Image, Tool, tool

@tool
def pixel_count(image: Image) -> str:
    """Count the pixels of an image."""
    return f"{image.width * image.height} pixels"

class Corners(Tool):
    """Report the colour of the top-left pixel."""
    name = "corner_colour"
    def run(self, image: Image) -> str:
        return str(tuple(image.to_numpy()[0, 0].tolist()))

TOOLS = [Corners]
'''

BROKEN_MODULE = "import this_package_does_not_exist_anywhere\n"

#: A third party's LLM backend and end-to-end system, registered by entry point only.
BACKEND_MODULE = '''
from mmreact.llms.base import LLM, Completion


class EchoLLM(LLM):
    """Answers every question with the text after ``echo:`` (a backend a user wrote)."""

    def __init__(self, text):
        self.text = text
        self.name = f"echo:{text}"

    @classmethod
    def from_spec(cls, rest):
        return cls(rest)

    def complete(self, request):
        return Completion(f"Final Answer: {self.text}")


class Shouter:
    """An end-to-end "system" that shouts the question back."""

    name = "shout"

    def __init__(self, rest, **options):
        self.rest = rest

    def run(self, question, images):
        class Out:
            answer = question.upper() + self.rest
            trace = None
        return Out()


def not_an_llm(rest):
    return "I am a string"
'''


def make_plugins(root: Path) -> Path:
    """Write the plug-in distributions (good tools, a broken package, a backend and a system) under
    ``root``; return it."""
    (root / "mmreact_demo_plugin.py").write_text(GOOD_MODULE)
    (root / "mmreact_broken_plugin.py").write_text(BROKEN_MODULE)
    (root / "mmreact_demo_backend.py").write_text(BACKEND_MODULE)
    for dist, eps in {
        "mmreact_demo_plugin-0.1": "[mmreact.tools]\npixels = mmreact_demo_plugin:pixel_count\n"
                                   "corners = mmreact_demo_plugin:TOOLS\n",
        "mmreact_broken_plugin-0.1": "[mmreact.tools]\nbroken = mmreact_broken_plugin:anything\n"
                                     "[mmreact.llms]\nbroken = mmreact_broken_plugin:anything\n",
        "mmreact_demo_backend-0.1": "[mmreact.llms]\necho = mmreact_demo_backend:EchoLLM.from_spec\n"
                                    "openai = mmreact_demo_backend:EchoLLM.from_spec\n"
                                    "stringly = mmreact_demo_backend:not_an_llm\n"
                                    "[mmreact.systems]\nshout = mmreact_demo_backend:Shouter\n",
    }.items():
        info = root / f"{dist}.dist-info"
        info.mkdir()
        name, version = dist.rsplit("-", 1)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(eps)
    return root

"""Builds an installed-looking distribution with ``mmreact.tools`` entry points in a folder."""

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


def make_plugins(root: Path) -> Path:
    """Write two plug-in distributions (one good, one broken) under ``root``; return it."""
    (root / "mmreact_demo_plugin.py").write_text(GOOD_MODULE)
    (root / "mmreact_broken_plugin.py").write_text(BROKEN_MODULE)
    for dist, eps in {
        "mmreact_demo_plugin-0.1": "[mmreact.tools]\npixels = mmreact_demo_plugin:pixel_count\n"
                                   "corners = mmreact_demo_plugin:TOOLS\n",
        "mmreact_broken_plugin-0.1": "[mmreact.tools]\nbroken = mmreact_broken_plugin:anything\n",
    }.items():
        info = root / f"{dist}.dist-info"
        info.mkdir()
        name, version = dist.rsplit("-", 1)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(eps)
    return root

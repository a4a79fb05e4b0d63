"""Execute the quickstart notebook, render it to HTML, and screenshot it with headless Chromium.

    python tools/screenshot_notebook.py [--out docs/quickstart.png] [--height 1600] [--keep DIR]

Needs the ``dev`` extra (nbclient, nbconvert, ipykernel) and a Chromium binary (Debian:
``apt-get install chromium``). The notebook runs in a temporary copy of ``examples/`` so nothing
it writes lands in the repository; ``--keep DIR`` also keeps the executed ``.ipynb`` and ``.html``.
Prints the time each stage took.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--virtual-time-budget=4000",
]


def execute(notebook: Path, workdir: Path, timeout: int = 300) -> Path:
    """Run every cell with a fresh kernel in ``workdir``; raise on the first failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    out = workdir / notebook.name
    nbformat.write(nb, out)
    return out


def to_html(executed: Path) -> Path:
    """The executed notebook as standalone HTML (JupyterLab look, no network needed)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("screenshot_notebook: no Chromium found; install it (Debian: apt-get install chromium).")


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not png.is_file():
        sys.exit(f"screenshot_notebook: Chromium failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "quickstart.png")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--keep", type=Path, default=None, help="keep the executed notebook and HTML here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "examples"
        shutil.copytree(ROOT / "examples", work, ignore=shutil.ignore_patterns("*.ipynb_checkpoints", "__pycache__"))
        t0 = time.perf_counter()
        executed = execute(work / NOTEBOOK.name, work)
        t1 = time.perf_counter()
        html = to_html(executed)
        t2 = time.perf_counter()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(html, args.out, args.width, args.height)
        t3 = time.perf_counter()
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(executed, args.keep)
            shutil.copy(html, args.keep)
    print(f"executed in {t1 - t0:.1f} s, HTML in {t2 - t1:.1f} s, screenshot in {t3 - t2:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()

"""The documentation site: it builds strictly, and every Python example in it runs.

``mkdocs build --strict`` fails on a broken link, a page missing from the navigation or an API
reference (mkdocstrings) that no longer resolves. Each page's ```python blocks run top to bottom
in one namespace, in the repository root, as a reader would paste them; a block that needs what
no test machine has (a hosted model's key, a GPU, the network) is marked with the HTML comment
``<!-- no-run: why -->`` on the line before it, and the reason must be given.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(?:<!--\s*no-run:(?P<why>[^>]*)-->\s*\n)?```python\n(?P<code>.*?)```", re.DOTALL)
PAGES = sorted(p for p in DOCS.rglob("*.md")) + [ROOT / "README.md"]


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return [(m.group("why"), m.group("code")) for m in BLOCK.finditer(page.read_text(encoding="utf-8"))]


def test_the_site_builds_strictly(tmp_path) -> None:
    pytest.importorskip("mkdocs")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_skipped_example_says_why() -> None:
    for page in PAGES:
        for why, _ in blocks(page):
            assert why is None or why.strip(), f"{page.name}: a no-run block must say why"


RUNNABLE = [(p, i) for p in PAGES for i, (why, _) in enumerate(blocks(p)) if why is None]


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted({p for p, _ in RUNNABLE}), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_on_the_page_runs(page: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, (why, code) in enumerate(blocks(page)):
        if why is not None:
            continue
        try:
            exec(compile(code, f"{page.name}[{i}]", "exec"), namespace)  # noqa: S102 - the docs' own code
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"{page.relative_to(ROOT)} block {i} failed: {exc!r}\n{code}") from exc

"""The documentation site: it builds strictly, and every Python example in it runs.

``mkdocs build --strict`` fails on a broken link, a page missing from the navigation or an API
reference (mkdocstrings) that no longer resolves. Each page's ```python blocks run top to bottom
in one namespace, in the repository root, as a reader would paste them; a block that needs what
no test machine has (a hosted model's key, a GPU, the network) is marked with the HTML comment
``<!-- no-run: why -->`` on the line before it, and the reason must be given.

The README stays a front page (at most 250 lines, with the command CI runs), and the text names
only modules and files that exist (no module name from before a rename).
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


# -- the README is a front page; the text names modules that exist --------------------------------
README_MAX_LINES = 250


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the docs pages hold the rest"


def test_the_readme_keeps_the_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line for line in ci.splitlines() if "pytest" in line and "pip install" in line)
    assert command.strip() in (ROOT / "README.md").read_text(encoding="utf-8")


#: Module names that were renamed; the text must use the new ones (left: old, right: new).
STALE = {
    r"mmreact\.shots\b": "mmreact.fewshot",
    r"mmreact\.notebook\b": "mmreact.views.notebook",
    r"mmreact\.annotate\b": "mmreact.views.boxes",
    r"mmreact\.display\b": "mmreact.views.text",
    r"mmreact\.render\b": "mmreact.prompts / mmreact.views.text",
    r"mmreact\.langchain_tools\b": "mmreact.tools.langchain",
    r"mmreact\.tool_status\b": "mmreact.tools.status",
    r"llms/native\.py": "mmreact.llms.llama_cpu",
    r"llms/lc_chat": "mmreact.llms.langchain_chat",
    r"llms/(gbnf|hf_constrain|hf_base)\b": "mmreact.llms._gbnf / _hf_constrain / _hf_decode",
    r"(?<![\w./])(render|tool_status|annotate|shots)\.py\b": "the module's new name",
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stale_module_names(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    stale = [f"{m.group(0)} (now {new})" for old, new in STALE.items() for m in re.finditer(old, text)]
    assert not stale, f"{page.relative_to(ROOT)} names renamed modules: {stale}"


DOTTED = re.compile(r"(?<![\w./(-])mmreact(?:\.[A-Za-z_]\w*)+(?!\.md\b)")


def _unknown_name(dotted: str) -> str | None:
    """The part of ``mmreact.a.b.C`` that does not exist: modules by their files, then the first
    name after the module in its source (no import: the docs name modules that need extras)."""
    parts = dotted.split(".")
    module = ROOT / "mmreact" / "__init__.py"
    i = 1
    while i < len(parts) and module.name == "__init__.py":
        package, file = module.parent / parts[i] / "__init__.py", module.parent / f"{parts[i]}.py"
        if not (package.is_file() or file.is_file()):
            break
        module = package if package.is_file() else file
        i += 1
    if i == len(parts):
        return None
    source = module.read_text(encoding="utf-8")
    return None if re.search(rf"\b{re.escape(parts[i])}\b", source) else ".".join(parts[: i + 1])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_named_exists(page: Path) -> None:
    names = sorted(set(DOTTED.findall(page.read_text(encoding="utf-8"))))
    unknown = [(n, bad) for n in names if (bad := _unknown_name(n)) is not None]
    assert not unknown, f"{page.relative_to(ROOT)} names what mmreact does not have: {unknown}"


FILE = re.compile(r"(?<![\w./-])(?:mmreact|tools|tests|examples|docs|\.ci)/[\w./-]*\w")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_file_named_exists(page: Path) -> None:
    named = sorted(set(FILE.findall(page.read_text(encoding="utf-8"))))
    missing = [n for n in named if not (ROOT / n).exists()]
    assert not missing, f"{page.relative_to(ROOT)} names files the repository does not have: {missing}"

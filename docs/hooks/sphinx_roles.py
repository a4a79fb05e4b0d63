"""MkDocs hook: show the Sphinx roles of mmreact's docstrings as plain code.

The docstrings write cross-references the Sphinx way (``:class:`~mmreact.llms.base.LLM```), which
mkdocstrings renders as the role's text followed by the code span. This drops the role and, as
Sphinx does for a leading ``~``, keeps only the last part of the name. Nothing is fetched.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    tilde, name = match.group(1), match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **_: object) -> str:
    return ROLE.sub(_plain, html)

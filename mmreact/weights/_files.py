"""Helpers for weights that are single files at a URL (YOLO's ``.pt``, EasyOCR's zips)."""

from __future__ import annotations

import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: seconds to wait for a size (HEAD) answer
HEAD_TIMEOUT = 10.0


def is_url(text: str) -> bool:
    return text.strip().lower().startswith(("http://", "https://"))


def url_file_name(url: str) -> str:
    """The file name a URL downloads to (its last path part, query left out)."""
    return Path(unquote(urlsplit(url).path)).name


def remote_size(url: str, timeout: float = HEAD_TIMEOUT) -> int | None:
    """The size of the file at ``url`` from a HEAD request (redirects followed), else None."""
    request = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "identity",
                                                                  "User-Agent": "mmreact"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only (is_url)
        length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def whole_zip(path: Path) -> bool:
    """Whether ``path`` is a whole zip archive (torch ``.pt`` files are zips; the end record comes last)."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False

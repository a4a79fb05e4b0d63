"""When mmreact may open a socket to fetch weights, decided in one place.

- ``MMREACT_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``): no socket is ever
  opened for weights, and ``mmreact pull`` refuses. These switches win over everything below.
- ``MMREACT_ALLOW_DOWNLOAD``: unset (the default) means weights missing here download on first
  use when their host answers a short probe; ``1`` downloads on first use without probing (for
  networks where the probe is wrong, e.g. a proxy mmreact cannot see); ``0`` never downloads on
  first use (only ``mmreact pull`` does).
- The probe is one TCP connection (to the proxy when one is configured for that URL) with a
  :data:`PROBE_SECONDS` budget that includes the name lookup, made once per host per process and
  remembered: without a network it answers at once instead of the hub client's five retries with
  backoff (about 23 s).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.request
from typing import Literal
from urllib.parse import urlsplit

log = logging.getLogger("mmreact")

#: The whole probe (name lookup and connect) gives up after this many seconds.
PROBE_SECONDS = 0.8
OFFLINE_SWITCHES = ("MMREACT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

FirstUse = Literal["auto", "on", "off"]

_probes: dict[tuple[str, int], bool] = {}
_probe_lock = threading.Lock()


def offline_switch() -> str | None:
    """``"HF_HUB_OFFLINE=1"`` (the first offline switch that is set), else None."""
    for name in OFFLINE_SWITCHES:
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name}=1"
    return None


def first_use() -> FirstUse:
    """What ``MMREACT_ALLOW_DOWNLOAD`` asks for: ``auto`` (unset), ``on`` or ``off``."""
    value = os.environ.get("MMREACT_ALLOW_DOWNLOAD", "").strip().lower()
    if value in _TRUE:
        return "on"
    if value in _FALSE:
        return "off"
    return "auto"


def host_of(url: str) -> str:
    """``https://huggingface.co/x`` -> ``https://huggingface.co`` (for messages)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def _target(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    scheme = parts.scheme or "https"
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    proxy = None
    if not urllib.request.proxy_bypass(host):
        proxies = urllib.request.getproxies()
        proxy = proxies.get(scheme) or proxies.get("all")
    if proxy:
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            try:
                return p.hostname, p.port or (443 if p.scheme == "https" else 80)
            except ValueError:
                return None
    return host, port


def _connect(target: tuple[str, int]) -> bool:
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection(target, timeout=PROBE_SECONDS).close()
            result.append(True)
        except Exception:  # noqa: BLE001 - any failure (DNS, refused, blocked) means unreachable
            result.append(False)

    worker = threading.Thread(target=attempt, name="mmreact-probe", daemon=True)
    worker.start()
    worker.join(PROBE_SECONDS)  # a name lookup that hangs is abandoned here
    return bool(result and result[0])


def reachable(url: str) -> bool:
    """Whether ``url``'s host (or its proxy) accepts a connection; probed once per process.

    Never opens a socket while an offline switch is set.
    """
    if offline_switch():
        return False
    target = _target(url)
    if target is None:
        return False
    with _probe_lock:  # one probe per host; concurrent callers wait for it
        known = _probes.get(target)
        if known is None:
            known = _probes[target] = _connect(target)
            log.info("probe %s:%s: %s", target[0], target[1], "reachable" if known else "unreachable")
    return known


def may_download(url: str) -> bool:
    """Whether weights from ``url`` may be fetched on first use, now."""
    if offline_switch():
        return False
    mode = first_use()
    if mode == "off":
        return False
    return mode == "on" or reachable(url)


_CONNECTION_ERRORS = ("ConnectError", "ConnectTimeout", "ConnectionError", "ConnectionRefusedError",
                      "NameResolutionError", "gaierror", "OfflineModeIsEnabled")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the host could not be reached at all."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(type(current).__name__ == name for name in _CONNECTION_ERRORS):
            return True
        reason = getattr(current, "reason", None)  # urllib's URLError wraps the socket error here
        if isinstance(reason, BaseException) and is_connection_error(reason):
            return True
        current = current.__cause__ or current.__context__
    return False


def unreachable(url: str, what: str) -> str:
    return f"{host_of(url)} cannot be reached from here, so the {what} cannot be downloaded."

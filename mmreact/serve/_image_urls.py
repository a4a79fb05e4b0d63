"""Images from ``image_url`` content parts: strict data URLs, and (only when allowed) remote https URLs.

Data URLs (``data:image/...;base64,...``) are decoded strictly (standard alphabet, padding checked,
no whitespace) and validated by mmreact's own loader (size, pixel limit, truncation, decompression
bombs). Nothing from the URL is ever echoed back in an error: messages name the content part
(``messages[0].content[1]``) instead.

Remote URLs are a server-side request forgery hole (a vLLM CVE; Ollama refuses them). When a
server opts in, :class:`ImageFetcher` allows https only, resolves the name once and refuses the
URL unless every address is public (no loopback, private, link-local, cloud metadata, multicast,
reserved, IPv4-mapped or embedded-IPv4 IPv6 address), then connects to exactly those checked
addresses (no second lookup, so DNS rebinding cannot swap them), never follows redirects, and
stops reading past ``max_bytes`` or ``timeout`` seconds. The resolver is injectable for tests.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import ImageError
from ..images import MB, Image, ImagePolicy, load_bytes, megabytes

#: ``host, port -> addresses`` (IP literals as text)
Resolver = Callable[[str, int], Sequence[str]]
_DATA_URL = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.IGNORECASE)
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def decode_data_url(url: str, label: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and media type of a ``data:image/...;base64,`` URL; ``ImageError`` otherwise."""
    match = _DATA_URL.match(url)
    if match is None:
        raise ImageError(f"The image in {label} is not a data URL (expected data:image/...;base64,...).")
    media = match.group("type").strip().lower()
    params = [p.strip().lower() for p in match.group("params").split(";") if p.strip()]
    if not media.startswith("image/"):
        raise ImageError(f"The data URL in {label} has media type '{media[:40] or 'none'}', not image/*.")
    if not params or params[-1] != "base64":
        raise ImageError(f"The data URL in {label} is not base64-encoded (expected ';base64,').")
    payload = url[match.end():]
    if not payload:
        raise ImageError(f"The data URL in {label} holds no data.")
    if len(payload) // 4 * 3 > max_bytes:
        raise ImageError(f"The image in {label} is over the {megabytes(max_bytes)} limit for one image.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"The data URL in {label} is not valid base64.") from None
    return data, media


def image_from_bytes(data: bytes, label: str, source: str, policy: ImagePolicy) -> Image:
    """Validate ``data`` with mmreact's own loader (:func:`mmreact.images.load_bytes`)."""
    image = load_bytes(data, f"The image in {label}", policy=policy)
    return dataclasses.replace(image, source=source)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``socket.getaddrinfo``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(address: str) -> str | None:
    """Why ``address`` must not be fetched from (``None`` when it is a public unicast address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if ip.sixtofour is not None or ip.teredo is not None or any(ip in net for net in _NAT64):
            return "an IPv6 address that embeds an IPv4 address"
    if ip in _METADATA:
        return "a cloud metadata address"
    checks = (("loopback", ip.is_loopback), ("link-local", ip.is_link_local), ("private", ip.is_private),
              ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved))
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


class _PinnedBackend:
    """An httpcore network backend that connects only to addresses checked beforehand."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        import httpcore

        self._inner = httpcore.SyncBackend()
        self.host = host
        self.addresses = list(addresses)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        import httpcore

        if host != self.host:  # pragma: no cover - the pool only ever connects to the URL's origin
            raise httpcore.ConnectError(f"unexpected host {host}")
        last: Exception | None = None
        for address in self.addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError("no address")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise RuntimeError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:  # pragma: no cover
        time.sleep(seconds)


class ImageFetcher:
    """Downloads images from public https URLs, with the SSRF guard described in the module doc.

    Args:
        max_bytes: most bytes read from one URL (more: refused while reading).
        timeout: seconds for the whole download (connect, headers and body).
        resolver: ``(host, port) -> addresses``; the system resolver by default.
        address_problem: ``address -> reason or None``; refuses non-public addresses by default.
        ssl_context: for tests with their own certificate authority; the system's by default.
    """

    def __init__(self, *, max_bytes: int = 10 * MB, timeout: float = 10.0,
                 resolver: Resolver | None = None, address_problem: Callable[[str], str | None] = address_problem,
                 ssl_context: Any = None) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.resolver = resolver or system_resolver
        self.address_problem = address_problem
        self.ssl_context = ssl_context

    def check(self, url: str, label: str) -> tuple[str, int, list[str]]:
        """Refuse a URL before any connection; returns ``(host, port, addresses)`` to connect to."""
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError:
            raise ImageError(f"The image URL in {label} is malformed.") from None
        if parts.scheme.lower() != "https":
            raise ImageError(f"The image URL in {label} must use https (got '{parts.scheme[:10]}:').")
        if parts.username is not None or parts.password is not None:
            raise ImageError(f"The image URL in {label} must not carry a user name or password.")
        host = parts.hostname
        if not host:
            raise ImageError(f"The image URL in {label} has no host.")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ImageError(f"The image URL in {label} has an invalid host name.") from None
        addresses = list(self.resolver(host, port))
        if not addresses:
            raise ImageError(f"The host of the image URL in {label} does not resolve.")
        for address in addresses:
            problem = self.address_problem(address)
            if problem is not None:
                raise ImageError(f"The image URL in {label} is refused: its host resolves to {problem}.")
        return host, port, addresses

    def fetch(self, url: str, label: str) -> bytes:
        """The body of ``url`` (an ``ImageError`` with one sentence for every refusal or failure)."""
        import httpcore

        host, _, addresses = self.check(url, label)
        deadline = time.monotonic() + self.timeout
        t = self.timeout
        extensions = {"timeout": {"connect": t, "read": t, "write": t, "pool": t}}
        headers = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "mmreact-serve"}
        try:
            with httpcore.ConnectionPool(ssl_context=self.ssl_context, network_backend=_PinnedBackend(host, addresses),
                                         retries=0, max_connections=1) as pool, \
                    pool.stream("GET", url, headers=headers, extensions=extensions) as response:
                if 300 <= response.status < 400:
                    raise ImageError(f"The image URL in {label} redirects; redirects are not followed.")
                if response.status != 200:
                    raise ImageError(f"The image URL in {label} answered HTTP {response.status}.")
                declared = _content_length(response.headers)
                if declared is not None and declared > self.max_bytes:
                    raise ImageError(self._too_big(label))
                body = bytearray()
                for chunk in response.iter_stream():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ImageError(self._too_big(label))
                    if time.monotonic() > deadline:
                        raise ImageError(f"The image URL in {label} took longer than {self.timeout:g} s.")
        except httpcore.TimeoutException:
            raise ImageError(f"The image URL in {label} took longer than {self.timeout:g} s.") from None
        except httpcore.ConnectError:
            raise ImageError(f"The image URL in {label} could not be reached.") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise ImageError(f"The image URL in {label} failed ({type(exc).__name__}).") from None
        return bytes(body)

    def _too_big(self, label: str) -> str:
        return f"The image URL in {label} is over the {megabytes(self.max_bytes)} download limit."


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

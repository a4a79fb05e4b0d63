"""The server's settings, checked once when the server is built."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import ConfigError
from ..images import MB


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``mmreact serve`` (one object shared by the CLI, the demo and Ray Serve).

    Limits:
        max_concurrency: agent runs at once; further admitted requests wait in the queue.
        max_queue: requests that may wait; one more is answered 429 with ``Retry-After``.
        max_body_bytes: request body limit (413), checked on ``Content-Length`` and while reading.
        Every size is in bytes; the CLI's ``--max-body-mb`` counts decimal megabytes (``MB``, 10**6),
        as every message prints them.
        max_images: images per request, all messages together (400 beyond).
        max_image_bytes / max_image_pixels: per decoded image (400 beyond).
        request_timeout: seconds from arrival to the end of the run, queueing included (504).
        drain_seconds: after SIGTERM, how long in-flight runs may take to finish before they are
            cancelled; new requests get 503 meanwhile.
        history_turns / history_chars: how much of a resent conversation is replayed to the agent
            (the most recent turns; each earlier message cut to ``history_chars``).

    Remote images (``allow_image_urls``): https only, every resolved address public, no
    redirects, at most ``url_max_bytes`` read within ``url_timeout`` seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str = "mmreact"
    api_keys: tuple[str, ...] = ()
    insecure: bool = False
    max_concurrency: int = 4
    max_queue: int = 16
    max_body_bytes: int = 32 * MB
    max_images: int = 16
    max_image_bytes: int = 20 * MB
    max_image_pixels: int = 40_000_000
    request_timeout: float = 300.0
    drain_seconds: float = 30.0
    history_turns: int = 8
    history_chars: int = 2000
    allow_image_urls: bool = False
    url_max_bytes: int = 10 * MB
    url_timeout: float = 10.0

    def __post_init__(self) -> None:
        positive = {
            "max_concurrency": self.max_concurrency, "max_body_bytes": self.max_body_bytes,
            "max_images": self.max_images, "max_image_bytes": self.max_image_bytes,
            "max_image_pixels": self.max_image_pixels, "request_timeout": self.request_timeout,
            "url_max_bytes": self.url_max_bytes, "url_timeout": self.url_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be more than 0, got {value}.")
        for name, value in {"max_queue": self.max_queue, "drain_seconds": self.drain_seconds,
                            "history_turns": self.history_turns, "history_chars": self.history_chars}.items():
            if value < 0:
                raise ConfigError(f"{name} must be 0 or more, got {value}.")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {self.port}.")
        if not self.model_name.strip():
            raise ConfigError("model_name must not be empty.")
        if any(not k for k in self.api_keys):
            raise ConfigError("An API key must not be empty.")
        if not self.api_keys and not self.insecure and not is_loopback(self.host):
            raise ConfigError(
                f"Binding to {self.host} without an API key would let anyone on the network run the agent; "
                "give --api-key KEY, or --insecure if that is really what you want."
            )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

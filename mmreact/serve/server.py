"""Run the app with uvicorn, draining on SIGTERM/SIGINT.

uvicorn's own shutdown stops listening at once, so a client would see "connection refused"
rather than an answer. Here the first signal only starts draining: the server keeps listening,
answers every new request with 503, and lets runs in flight finish (streams included) for up to
``drain_seconds``; runs still going then are cancelled between steps, and uvicorn shuts down. A
second SIGINT exits at once.

The listening socket is bound first (:func:`bind`), before the agent loads and before anything says
that it serves: a port that is taken is one sentence and exit status 2 (``ConfigError``), not a log
line from uvicorn after startup and exit status 3; uvicorn then serves on that very socket.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import time
from types import FrameType
from typing import Any

from fastapi import FastAPI

from ..errors import ConfigError
from .config import ServeConfig

log = logging.getLogger("mmreact.serve")


def _uvicorn_server_class() -> type:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """A uvicorn server whose first exit signal drains (see the module doc)."""

        def __init__(self, config: Any, app: FastAPI, drain_seconds: float) -> None:
            super().__init__(config)
            self.mmreact = app.state.mmreact
            self.drain_seconds = drain_seconds
            self.drain_deadline: float | None = None
            self.cancelled_runs = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.drain_deadline is None:
                log.info("draining: new requests get 503; waiting up to %.0f s for %d run(s)",
                         self.drain_seconds, self.mmreact.admission.running)
                self.drain_deadline = time.monotonic() + self.drain_seconds
                self.mmreact.start_draining()
            elif sig == signal.SIGINT:
                self.force_exit = True
                self.should_exit = True

        async def on_tick(self, counter: int) -> bool:
            if self.drain_deadline is not None and not self.should_exit:
                if self.mmreact.drained:
                    self.should_exit = True
                elif time.monotonic() > self.drain_deadline:
                    if not self.cancelled_runs:
                        log.warning("drain time is up: cancelling %d run(s)", self.mmreact.admission.running)
                        self.mmreact.cancel_all()
                        self.cancelled_runs = True
                    if time.monotonic() > self.drain_deadline + 5:
                        self.should_exit = True
            return await super().on_tick(counter)

    return DrainingServer


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds one: ``SO_REUSEADDR``, IPv6 for an address
    with a colon), or :class:`ConfigError` in one sentence when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"Port {port} is already in use on {host}: stop what listens there, or choose "
                              "another with --port.") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"Not allowed to listen on {shown} (ports below 1024 need privileges): choose "
                              "another with --port.") from None
        raise ConfigError(f"Cannot listen on {shown} ({exc.strerror or exc}).") from None
    sock.set_inheritable(True)
    return sock


def run_server(app: FastAPI, config: ServeConfig, *, log_level: str = "info",
               sock: socket.socket | None = None) -> None:
    """Serve ``app`` on ``config.host:config.port`` (on ``sock`` when given, already bound there; else
    bound here first) until SIGTERM/SIGINT, then drain and exit."""
    import uvicorn

    sock = sock or bind(config.host, config.port)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, lifespan="on",
                               timeout_graceful_shutdown=5, server_header=False, access_log=log_level == "debug")
    server = _uvicorn_server_class()(uv_config, app, config.drain_seconds)
    server.run(sockets=[sock])

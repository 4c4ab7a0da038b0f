"""Serving the HTTP app with uvicorn: in a thread of ``ionflux up`` (embedded), or as ``ionflux api``."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from engine.errors import IonfluxError

log = logging.getLogger("ionflux.server")


class ServerError(IonfluxError):
    code = "server.bind_failed"


@dataclass
class Running:
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ServerError(f"IONFLUX_BIND {bind!r} is not host:port", hint="e.g. 127.0.0.1:8080 (port 0: any free port)")
    return host.strip("[]"), int(port)


def serve_in_thread(app: FastAPI, bind: str, *, timeout: float = 10.0) -> Running:
    """Start serving ``app`` on ``bind`` (host:port; port 0 picks a free one); returns once it listens."""
    host, port = parse_bind(bind)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ionflux-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ServerError(
                f"the HTTP server could not listen on {bind} (the port is taken, or the address is not this machine's)",
                hint="set IONFLUX_BIND to a free host:port, e.g. 127.0.0.1:8081",
            )
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    return Running(server, thread, f"http://{bound[0]}:{bound[1]}")

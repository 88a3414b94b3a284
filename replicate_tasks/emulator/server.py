"""Serving the emulator over real sockets with uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from .app import ConnectionDropped

logger = logging.getLogger("replicate_tasks.emulator")

STARTUP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class _DroppedConnectionFilter(logging.Filter):
    """Hide uvicorn's traceback for connections that the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        exception_type = record.exc_info[0]
        return exception_type is None or not issubclass(exception_type, ConnectionDropped)


_filter_lock = threading.Lock()
_filter_installed = False


def quiet_dropped_connections() -> None:
    """Install the filter on uvicorn's error logger, once per process."""
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            logging.getLogger("uvicorn.error").addFilter(_DroppedConnectionFilter())
            _filter_installed = True


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn on a daemon thread and yield its base URL.

    Port 0 picks a free port. The server stops, and its thread is joined, when
    the block exits. Logging configuration is left to the caller.
    """
    quiet_dropped_connections()
    listener = socket.socket(_address_family(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    bound_port = listener.getsockname()[1]

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_SECONDS),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[listener])),
        name=f"replicate-emulator-{bound_port}",
        daemon=True,
    )
    thread.start()

    try:
        _wait_until_started(server, thread, host, bound_port)
        url = _base_url(host, bound_port)
        logger.info("Emulator listening on %s.", url)
        yield url
    finally:
        _stop(server, thread)
        listener.close()
        logger.info("Emulator on %s:%s stopped.", host, bound_port)


def _wait_until_started(
    server: uvicorn.Server, thread: threading.Thread, host: str, port: int
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(
                f"The emulator server on {host}:{port} exited during startup. "
                "See the uvicorn.error log for the cause."
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"The emulator server on {host}:{port} did not start within "
                f"{STARTUP_TIMEOUT_SECONDS:g} seconds."
            )
        time.sleep(0.01)


def _stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(SHUTDOWN_TIMEOUT_SECONDS)
    if thread.is_alive():
        server.force_exit = True
        thread.join(SHUTDOWN_TIMEOUT_SECONDS)
    if thread.is_alive():
        logger.warning("The emulator server thread %s did not stop.", thread.name)


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _base_url(host: str, port: int) -> str:
    if ":" in host:
        return f"http://[{host}]:{port}"
    return f"http://{host}:{port}"

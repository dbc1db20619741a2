"""``meterql serve --workers N``: N server processes, each with its own listening socket.

uvicorn's own supervisor binds one socket and shares it with every worker.
Each worker's event loop then accepts whatever is waiting when it wakes, so
clients that open their connections together and keep them (a load
balancer's pool, ``wrk -c16``) often all land on the worker that woke first:
measured here, two workers served 1.0× one worker's requests/s as often as
1.9×. Here each worker binds its own socket to the same address with
``SO_REUSEPORT``, and the kernel spreads new connections over the workers by
their addresses, as nginx's ``reuseport`` does.

The parent holds one more socket on the address, bound but never listening:
it claims the port before any worker starts (a port in use is one clear
error, not N crashing workers) and fixes the number when ``--port 0`` asks
for any free one. A socket that does not listen receives no connections.

The parent restarts a worker that dies after it started serving and stops
everything if one dies while starting (a broken configuration would only
die again), and on SIGINT or SIGTERM stops the workers gracefully.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from typing import Any

logger = logging.getLogger("meterql.serve")

# Linux spreads the connections of a SO_REUSEPORT group over its sockets;
# elsewhere the option means something else (BSD and macOS give one socket
# everything), and ``meterql serve`` keeps uvicorn's shared socket.
SPREADS_CONNECTIONS = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")

# A worker that exits sooner than this after it started was never serving.
_STARTUP_S = 15.0
# How long stopping workers may take before they are killed.
_STOP_S = 20.0
# What each worker process imports and calls to build its app.
APP_FACTORY = "meterql.app:app_from_environment"


@dataclass(frozen=True)
class Listen:
    """Where the workers listen, how uvicorn logs in each of them, and how long
    each keeps an idle connection (``Settings.keep_alive_s``)."""

    host: str
    port: int
    log_config: dict[str, Any]
    keep_alive_s: int

    def server_options(self) -> dict[str, Any]:
        """uvicorn's options for a server here: the same with one worker or N."""
        return {"host": self.host, "port": self.port, "log_config": self.log_config,
                "timeout_keep_alive": self.keep_alive_s,
                # meterql.web.access logs each request, saying more than uvicorn would.
                "access_log": False}


def reuse_port_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, listening if asked."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve_one(where: Listen, listening: Any) -> None:  # pragma: no cover - in a worker
    import uvicorn

    # Listening from here on: connections wait in this socket's backlog
    # while the app starts.
    sock = reuse_port_socket(where.host, where.port, listen=True)
    listening.set()
    config = uvicorn.Config(APP_FACTORY, factory=True, **where.server_options())
    uvicorn.Server(config).run(sockets=[sock])


class Workers:
    """The parent of ``count`` worker processes serving the app on one address."""

    def __init__(self, where: Listen, count: int) -> None:
        self._where = where
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM: 0, or 1 if a worker could not start."""
        logging.config.dictConfig(self._where.log_config)
        try:
            claim = reuse_port_socket(self._where.host, self._where.port, listen=False)
        except OSError as exc:
            logger.error("cannot listen on %s:%s: %s", self._where.host, self._where.port,
                         exc.strerror or exc)
            return 1
        where = replace(self._where, port=claim.getsockname()[1])
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        workers = [self._start(where) for _ in range(self._count)]
        failed = False
        try:
            if self._all_listening(workers):
                # uvicorn's own line, as with one worker: scripts wait for it.
                address = f"[{where.host}]" if ":" in where.host else where.host
                logging.getLogger("uvicorn.error").info(
                    "Uvicorn running on http://%s:%d with %d workers (Press CTRL+C to quit)",
                    address, where.port, self._count)
            while not self._stop.wait(0.5):
                for n, (process, started, _) in enumerate(workers):
                    if process.is_alive():
                        continue
                    if time.monotonic() - started < _STARTUP_S:
                        logger.error("worker %s exited while starting (code %s): stopping",
                                     process.pid, process.exitcode)
                        failed = True
                        self._stop.set()
                        break
                    logger.warning("worker %s exited (code %s): starting another",
                                   process.pid, process.exitcode)
                    workers[n] = self._start(where)
        finally:
            self._stop_all([process for process, _, _ in workers])
            claim.close()
        return 1 if failed else 0

    def _start(self, where: Listen) -> tuple[BaseProcess, float, Any]:
        listening = self._context.Event()
        process = self._context.Process(target=_serve_one, args=(where, listening),
                                        daemon=False)
        process.start()
        return process, time.monotonic(), listening

    def _all_listening(self, workers: list[tuple[BaseProcess, float, Any]]) -> bool:
        """Wait until every worker listens: False if stopped, or one exited first."""
        for process, _, listening in workers:
            while not listening.wait(0.1):
                if self._stop.is_set() or not process.is_alive():
                    return False
        return True

    @staticmethod
    def _stop_all(processes: list[BaseProcess]) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

"""Starts a TCP daemon when a client first speaks to it, and ends it when unused.

    python3 on_demand.py LISTEN_HOST:PORT BACKEND_HOST:PORT IDLE_SECONDS -- COMMAND ...

Nova's console proxy imports all of Nova (about 115 MiB) to serve the consoles a
home cloud opens now and then. This listens on its port in its place: a client
that sends its first bytes (a browser's TLS hello) starts the daemon, listening on
a loopback port, if it is not running, and its connection is relayed there byte
for byte (TLS ends in the daemon, which sees the request as sent). Once no client
has been connected for IDLE_SECONDS, the daemon is ended. A connection that sends
nothing, such as a port check, starts nothing.

The daemon is started once at start and must come up, so a daemon that cannot
start (a bad configuration, say) ends this process and shows in the container's
state as at once as it did before; it is then ended when idle.

Standard library only: it runs on the image's system Python.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

LOG = logging.getLogger("on-demand")
#: How long a started daemon may take to listen.
START_TIMEOUT = 90.0
#: How long a client may take to send its first bytes before it is dropped.
FIRST_BYTES_TIMEOUT = 30.0
#: Clients relayed at once; more are refused until one ends (websockify, behind,
#: starts a process for each).
MAX_CLIENTS = 256
CHUNK = 65536


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


@dataclass
class Daemon:
    """The daemon's process, started when needed and ended when idle."""

    command: Sequence[str]
    backend: tuple[str, int]
    idle_seconds: float
    process: subprocess.Popen[bytes] | None = None
    clients: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> socket.socket:
        """A connection to the daemon, started first if it is not running."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                LOG.info("starting the daemon")
                self.process = subprocess.Popen(list(self.command))
            process = self.process
            self.clients += 1
        try:
            return wait_listening(self.backend, process)
        except OSError:
            self.release()
            raise

    def release(self) -> None:
        with self.lock:
            self.clients -= 1
            self.last_seen = time.monotonic()

    def stop_if_idle(self, now: float) -> None:
        with self.lock:
            idle = self.clients == 0 and now - self.last_seen >= self.idle_seconds
            if not idle or self.process is None or self.process.poll() is not None:
                return
            LOG.info("no client for %.0f s: ending the daemon", now - self.last_seen)
            end(self.process)
            self.process = None


def wait_listening(backend: tuple[str, int], process: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return socket.create_connection(backend, timeout=5)
        except OSError:
            if process.poll() is not None:
                raise OSError(f"the daemon exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def relay(client: socket.socket, daemon: Daemon, peer: str) -> None:
    """One client: wait for its first bytes, then relay both ways until both ends
    are done. The daemon sees every client come from loopback, so each is logged."""
    with client:
        if not first_bytes(client):
            return
        LOG.info("client %s", peer)
        try:
            backend = daemon.connect()
        except OSError as error:
            LOG.error("cannot reach the daemon: %s", error)
            return
        try:
            with backend:
                pipe(client, backend)
        except OSError:
            pass  # a browser closed abruptly; the other side is closed with it
        finally:
            daemon.release()


def first_bytes(client: socket.socket) -> bool:
    """Whether the client sends anything (left unread) within the time allowed."""
    client.settimeout(FIRST_BYTES_TIMEOUT)
    try:
        return bool(client.recv(1, socket.MSG_PEEK))
    except OSError:  # the time ran out, or the client reset
        return False


def pipe(one: socket.socket, other: socket.socket) -> None:
    """Bytes both ways; a side that has sent all it will send (a half close) is
    passed on as one, and the relay ends when neither side has more to send."""
    peers = {one: other, other: one}
    with selectors.DefaultSelector() as selector:
        for side in peers:
            side.settimeout(None)
            selector.register(side, selectors.EVENT_READ)
        open_sides = len(peers)
        while open_sides:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                data = source.recv(CHUNK)
                if data:
                    peers[source].sendall(data)
                    continue
                selector.unregister(source)
                peers[source].shutdown(socket.SHUT_WR)
                open_sides -= 1


def watch_idle(daemon: Daemon, interval: float) -> None:
    while True:
        time.sleep(interval)
        daemon.stop_if_idle(time.monotonic())


def serve(listen: tuple[str, int], daemon: Daemon) -> None:
    server = socket.create_server(listen)
    # Started once: a daemon that cannot come up ends this process, visibly.
    daemon.connect().close()
    daemon.release()
    interval = max(1.0, min(30.0, daemon.idle_seconds / 4))
    threading.Thread(target=watch_idle, args=(daemon, interval), daemon=True).start()
    slots = threading.BoundedSemaphore(MAX_CLIENTS)
    while True:
        try:
            client, (host, port, *_) = server.accept()
        except OSError as error:  # out of file descriptors, say: not a reason to end
            LOG.error("accepting a client: %s", error)
            time.sleep(0.5)
            continue
        if not slots.acquire(blocking=False):
            LOG.error("%d clients already: refusing %s:%s", MAX_CLIENTS, host, port)
            client.close()
            continue
        try:
            threading.Thread(
                target=one_client, args=(client, daemon, f"{host}:{port}", slots), daemon=True
            ).start()
        except RuntimeError as error:  # no thread to be had
            LOG.error("serving %s:%s: %s", host, port, error)
            client.close()
            slots.release()


def one_client(
    client: socket.socket, daemon: Daemon, peer: str, slots: threading.BoundedSemaphore
) -> None:
    try:
        relay(client, daemon, peer)
    finally:
        slots.release()


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s on-demand %(message)s")
    if "--" not in argv or len(argv[: argv.index("--")]) != 3 or argv[-1] == "--":
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    listen, backend, idle = argv[: argv.index("--")]
    daemon = Daemon(argv[argv.index("--") + 1 :], address(backend), float(idle))

    def stop(signum: int, frame: FrameType | None) -> None:
        if daemon.process is not None and daemon.process.poll() is None:
            end(daemon.process)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        serve(address(listen), daemon)
    except OSError as error:
        LOG.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

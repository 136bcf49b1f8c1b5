"""The switches that keep a service's privileged calls and its one worker in its own process."""

from __future__ import annotations

import importlib
import queue
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from dietstack.start import in_process

#: Enough of oslo.privsep's PrivContext to tell a daemon call from a direct one.
FAKE_PRIV_CONTEXT = """
class PrivContext:
    started = 0

    def __init__(self, prefix, capabilities=None):
        self.client_mode = True

    def set_client_mode(self, enabled):
        self.client_mode = enabled

    def start(self, method=None):
        PrivContext.started += 1

    def entrypoint(self, func):
        def call(*args):
            if self.client_mode:
                self.start()
                return ("through the daemon", func(*args))
            return func(*args)
        return call
"""


@pytest.fixture
def fake_privsep(tmp_path: Path) -> Iterator[Path]:
    package = tmp_path / "oslo_privsep"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "priv_context.py").write_text(textwrap.dedent(FAKE_PRIV_CONTEXT))
    sys.path.insert(0, str(tmp_path))
    meta_path = list(sys.meta_path)
    yield tmp_path
    sys.meta_path[:] = meta_path
    sys.path.remove(str(tmp_path))
    for name in ("oslo_privsep", in_process.PRIVSEP):
        sys.modules.pop(name, None)


def test_privileged_calls_run_in_the_caller_and_no_daemon_starts(fake_privsep: Path) -> None:
    in_process.install()
    from oslo_privsep import priv_context  # type: ignore[import-not-found]

    context = priv_context.PrivContext("neutron", capabilities=[])
    double = context.entrypoint(lambda x: x * 2)
    assert double(21) == 42
    context.set_client_mode(True)
    context.start()
    assert double(2) == 4 and priv_context.PrivContext.started == 0


def test_without_the_switch_the_fake_goes_through_its_daemon(fake_privsep: Path) -> None:
    from oslo_privsep import priv_context

    context = priv_context.PrivContext("neutron", capabilities=[])
    assert context.entrypoint(lambda x: x * 2)(21) == ("through the daemon", 42)


@pytest.mark.parametrize("mode", [0o755, 0o644], ids=["a command", "a script by its path"])
def test_the_command_runs_as_its_own_main_script(
    tmp_path: Path, fake_privsep: Path, mode: int
) -> None:
    script = tmp_path / "bin" / "fake-agent"
    script.parent.mkdir()
    script.write_text(
        "import sys\n"
        "from oslo_privsep import priv_context\n"
        "if __name__ == '__main__':\n"
        "    context = priv_context.PrivContext('x', capabilities=[])\n"
        "    sys.modules['fake_agent_result'] = (sys.argv[1:], context.client_mode)\n"
    )
    script.chmod(mode)
    sys.path.insert(0, "placeholder for the script's directory")
    in_process.main([str(script), "--config-file", "a.conf"])
    assert sys.modules.pop("fake_agent_result") == (["--config-file", "a.conf"], False)  # type: ignore[comparison-overlap]


#: Enough of oslo.service's threading backend to tell a spawned worker from one in process.
FAKE_LAUNCHERS = """
import os


class opts:
    @staticmethod
    def register_service_opts(conf):
        pass


class common_service:
    @staticmethod
    def check_service_base(service):
        pass


SPAWNED = []


class ServiceLauncher:

    def __init__(self, conf, restart_method="reload"):
        self.conf = conf

    def launch_service(self, service, workers=1):
        SPAWNED.append((service, workers))

    def wait(self):
        return 0


class ProcessLauncher(ServiceLauncher):
    def __init__(self, conf, restart_method="reload", no_fork=False):
        self.no_fork = no_fork
"""


class Service:
    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def wait(self) -> None:
        self.events.append("wait")

    def stop(self) -> None:
        self.events.append("stop")


class Conf:
    graceful_shutdown_timeout = 60


def fake_backend(tmp_path: Path, backend: str, source: str) -> Iterator[ModuleType]:
    """oslo.service with one backend whose service module is `source`, imported
    with the switches installed."""
    package = tmp_path / "oslo_service" / "backend" / backend
    package.mkdir(parents=True)
    for directory in (package, package.parent, package.parent.parent):
        (directory / "__init__.py").write_text("")
    (package / "service.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    meta_path = list(sys.meta_path)
    sigterm = signal.getsignal(signal.SIGTERM)
    in_process.install()
    yield importlib.import_module(f"oslo_service.backend.{backend}.service")
    signal.signal(signal.SIGTERM, sigterm)
    sys.meta_path[:] = meta_path
    sys.path.remove(str(tmp_path))
    for name in list(sys.modules):
        if name.startswith("oslo_service"):
            del sys.modules[name]


@pytest.fixture
def fake_launchers(tmp_path: Path) -> Iterator[ModuleType]:
    yield from fake_backend(tmp_path, "_threading", FAKE_LAUNCHERS)


def test_one_worker_starts_in_this_process_and_stops_on_sigterm(
    fake_launchers: ModuleType,
) -> None:
    launcher = fake_launchers.ServiceLauncher(Conf())
    periodic, maintenance = Service(), Service()
    launcher.launch_service(periodic)
    launcher.launch_service(maintenance, workers=1)
    assert periodic.events == maintenance.events == ["start"]
    assert fake_launchers.ServiceLauncher.__mro__[1] is object  # not the backend's class
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    launcher.stop()
    assert launcher.wait() == 0
    assert periodic.events == ["start", "stop", "wait"]


def test_more_than_one_worker_goes_to_the_backends_launcher(fake_launchers: ModuleType) -> None:
    service = Service()
    launcher = fake_launchers.ProcessLauncher(Conf(), restart_method="mutate")
    launcher.launch_service(service, workers=2)
    assert service.events == []
    assert launcher.wait() == 0
    assert fake_launchers.SPAWNED[-1] == (service, 2)


def test_a_launcher_already_in_process_is_the_backends_own(fake_launchers: ModuleType) -> None:
    launcher = fake_launchers.ProcessLauncher(Conf(), no_fork=True)
    assert type(launcher).__name__ == "ProcessLauncher" and launcher.no_fork


#: Enough of oslo.service's eventlet backend: its ServiceLauncher serves in this
#: process, its ProcessLauncher forks.
FAKE_EVENTLET_LAUNCHERS = """
FORKED = []


class ServiceLauncher:
    def __init__(self, conf, restart_method="reload"):
        self.restart_method = restart_method
        self.services = []

    def launch_service(self, service, workers=1):
        if workers is not None and workers != 1:
            raise ValueError("Launcher asked to start multiple workers")
        self.services.append(service)
        service.start()

    def wait(self):
        for service in self.services:
            service.wait()
        return 0

    def stop(self):
        for service in self.services:
            service.stop()


class ProcessLauncher:
    def __init__(self, conf, wait_interval=0.01, restart_method="reload"):
        self.restart_method = restart_method

    def launch_service(self, service, workers=1):
        FORKED.append((service, workers))

    def wait(self):
        return 0
"""


@pytest.fixture
def fake_eventlet(tmp_path: Path) -> Iterator[ModuleType]:
    yield from fake_backend(tmp_path, "_eventlet", FAKE_EVENTLET_LAUNCHERS)


def test_eventlet_one_worker_per_service_runs_in_this_process(fake_eventlet: ModuleType) -> None:
    # cinder-volume: a ProcessLauncher, one service per backend, one worker each.
    launcher = fake_eventlet.ProcessLauncher(Conf(), restart_method="mutate")
    backends = Service(), Service()
    for backend in backends:
        launcher.launch_service(backend)
    assert [b.events for b in backends] == [["start"], ["start"]]
    assert fake_eventlet.FORKED == []
    assert launcher._launcher.restart_method == "mutate"
    launcher.stop()
    assert launcher.wait() == 0
    assert backends[0].events == ["start", "stop", "wait"]


def test_eventlet_workers_still_fork(fake_eventlet: ModuleType) -> None:
    service = Service()
    launcher = fake_eventlet.ProcessLauncher(Conf(), restart_method="mutate")
    launcher.launch_service(service, workers=3)
    assert fake_eventlet.FORKED == [(service, 3)] and service.events == []
    with pytest.raises(ValueError, match="mixed"):
        launcher.launch_service(Service())


def fake_amqpdriver(green: bool) -> ModuleType:
    """oslo.messaging's reply waiters: polled twice a second, as upstream does."""
    module = ModuleType("fake_amqpdriver")

    class ReplyWaiters:
        def __init__(self) -> None:
            self._queues: dict[str, queue.Queue[str]] = {"m1": queue.Queue()}

        def get(self, msg_id: str, timeout: float) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    return self._queues[msg_id].get(block=False)
                except queue.Empty:
                    time.sleep(0.5)
            raise TimeoutError(msg_id)

    module.ReplyWaiters = ReplyWaiters  # type: ignore[attr-defined]
    module.eventletutils = SimpleNamespace(is_monkey_patched=lambda name: green)  # type: ignore[attr-defined]
    return module


def reply_after(waiters: Any, seconds: float) -> float:
    """Seconds until the waiter has a reply that is sent after `seconds`."""
    threading.Timer(seconds, waiters._queues["m1"].put, ["reply"]).start()
    started = time.monotonic()
    assert waiters.get("m1", timeout=5) == "reply"
    return time.monotonic() - started


@pytest.mark.parametrize("green", [False, True], ids=["threads", "eventlet"])
def test_an_rpc_reply_is_taken_when_it_arrives(green: bool) -> None:
    module = fake_amqpdriver(green)
    in_process.make_reply_wait_blocking(module)
    assert reply_after(module.ReplyWaiters(), 0.05) < 0.3
    with pytest.raises(queue.Empty):
        module.ReplyWaiters().get("m1", timeout=0.05)


def test_a_reply_wait_that_blocks_already_is_left_as_upstream_wrote_it() -> None:
    """oslo.messaging 18.2 and later (2026.2) block on the queue and raise their own
    MessagingTimeout: the patch would change what a timeout raises."""
    module = ModuleType("fake_amqpdriver")

    class ReplyWaiters:
        def get(self, msg_id: str, timeout: float) -> str:
            return queue.Queue[str]().get(block=True, timeout=timeout)

    module.ReplyWaiters = ReplyWaiters  # type: ignore[attr-defined]
    original = ReplyWaiters.get
    in_process.make_reply_wait_blocking(module)
    assert ReplyWaiters.get is original


def test_the_console_proxys_vencrypt_client_verifies_qemu_and_presents_its_own(
    tmp_path: Path,
) -> None:
    """Nova's call, ssl.wrap_socket(sock, keyfile, certfile, server_side, cert_reqs,
    ca_certs), made against a VNC server that requires a client certificate."""
    import socket
    import ssl
    import types

    from dietstack.engine import keys
    from dietstack.model import SERVICE_ORGANIZATION
    from dietstack.start import in_process

    ca_key, ca = keys.certificate_authority("nodes CA")
    qemu_key, qemu_cert = keys.node_certificate(ca_key, ca, "n1", "10.0.0.1")
    proxy_key, proxy_cert = keys.node_certificate(
        ca_key, ca, "n0", "10.0.0.2", SERVICE_ORGANIZATION
    )
    files = {
        "ca.pem": ca,
        "qemu.key": qemu_key,
        "qemu.crt": qemu_cert,
        "proxy.key": proxy_key,
        "proxy.crt": proxy_cert,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    nova_module = types.ModuleType("nova.console.rfb.authvencrypt")
    nova_module.ssl = ssl  # type: ignore[attr-defined]
    in_process.give_vencrypt_a_tls_client(nova_module)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "qemu.crt", tmp_path / "qemu.key")
    server.load_verify_locations(tmp_path / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED
    ours, theirs = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        with server.wrap_socket(theirs, server_side=True) as tls:
            peer = tls.getpeercert()
            assert peer is not None
            seen["client"] = peer["subject"]
            tls.sendall(b"RFB")

    thread = threading.Thread(target=serve)
    thread.start()
    wrapped = nova_module.ssl.wrap_socket(
        ours,
        keyfile=str(tmp_path / "proxy.key"),
        certfile=str(tmp_path / "proxy.crt"),
        server_side=False,
        cert_reqs=ssl.CERT_REQUIRED,
        ca_certs=str(tmp_path / "ca.pem"),
    )
    assert wrapped.recv(3) == b"RFB"
    thread.join(5)
    assert ((("organizationName", SERVICE_ORGANIZATION),), (("commonName", "n0"),)) == seen[
        "client"
    ]
    wrapped.close()
    # A server of another CA is refused.
    other_key, other = keys.certificate_authority("another CA")
    (tmp_path / "other.pem").write_text(other)
    ours, theirs = socket.socketpair()
    refusing = threading.Thread(target=lambda: _handshake_quietly(server, theirs))
    refusing.start()
    with pytest.raises(ssl.SSLError):
        nova_module.ssl.wrap_socket(
            ours, cert_reqs=ssl.CERT_REQUIRED, ca_certs=str(tmp_path / "other.pem")
        )
    ours.close()
    refusing.join(5)


def _handshake_quietly(context: object, sock: object) -> None:
    import ssl

    try:
        assert isinstance(context, ssl.SSLContext)
        context.wrap_socket(sock, server_side=True).close()  # type: ignore[arg-type]
    except (ssl.SSLError, OSError):
        pass


class FakeServer:
    """oslo.messaging's MessageHandlingServer as far as its executor goes: __init__
    picks the executor class of its `executor` option, start() makes one with
    max_workers alone."""

    def __init__(self, executor: str) -> None:
        import futurist

        self._executor_cls = {
            "threading": futurist.ThreadPoolExecutor,
            "eventlet": futurist.GreenThreadPoolExecutor,
        }[executor]

    def start(self, pool_size: int = 64) -> Any:
        self._work_executor = self._executor_cls(max_workers=pool_size)
        return self._work_executor


def fake_rpc_server_module() -> ModuleType:
    module = ModuleType("fake_oslo_messaging_server")
    module.MessageHandlingServer = type("MessageHandlingServer", (FakeServer,), {})  # type: ignore[attr-defined]
    in_process.make_rpc_pools_grow_on_demand(module)
    return module


def threads_after(pool: Any, requests: int, each: float) -> int:
    """The pool's threads once `requests` requests of `each` seconds, all sent at
    once, have been answered."""
    futures = [pool.submit(time.sleep, each) for _ in range(requests)]
    for future in futures:
        future.result(timeout=10)
    return int(pool.num_workers)


def test_an_rpc_server_starts_threads_only_as_its_requests_need() -> None:
    import futurist

    server = fake_rpc_server_module().MessageHandlingServer("threading")
    pool = server.start(64)
    try:
        # Requests one after another: upstream's pool started a thread for each
        # of them (64 here, each waking every second ever after).
        for _ in range(64):
            pool.submit(time.sleep, 0).result(timeout=5)
        assert pool.num_workers <= 2
        plain = futurist.ThreadPoolExecutor(max_workers=64)
        for _ in range(64):
            plain.submit(time.sleep, 0).result(timeout=5)
        assert plain.num_workers == 64
        plain.shutdown()
        # Twenty at once still run at once: the pool grows to take them.
        started = time.monotonic()
        assert threads_after(pool, 20, 0.3) >= 16
        assert time.monotonic() - started < 2.5
        # And lets idle threads go as later requests find them idle.
        for _ in range(40):
            pool.submit(time.sleep, 0).result(timeout=5)
        assert pool.num_workers <= 3
        # The threads it let go are not kept once they have ended.
        time.sleep(1.5)
        pool.submit(time.sleep, 0).result(timeout=5)
        assert len(pool._dead_workers) <= 1
    finally:
        pool.shutdown()


def test_an_rpc_server_keeps_its_most_threads() -> None:
    module = fake_rpc_server_module()
    pool = module.MessageHandlingServer("threading").start(4)
    try:
        assert threads_after(pool, 12, 0.05) == 4
    finally:
        pool.shutdown()
    single = module.MessageHandlingServer("threading").start(1)
    try:
        assert threads_after(single, 3, 0.01) == 1
    finally:
        single.shutdown()


def test_a_green_thread_server_keeps_its_own_pool() -> None:
    import futurist

    server = fake_rpc_server_module().MessageHandlingServer("eventlet")
    assert server._executor_cls is futurist.GreenThreadPoolExecutor

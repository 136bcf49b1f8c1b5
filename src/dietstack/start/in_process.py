"""Runs an OpenStack daemon with its privileged calls and its one worker in its own process.

    python3 in_process.py COMMAND|SCRIPT [ARG ...]

Two libraries start extra Python processes that each import the service's
libraries again, about 40 to 110 MiB apiece:

- oslo.privsep starts one helper daemon per privilege context a service uses
  (neutron's metadata agent three, nova-compute three: sys_admin, os-vif,
  os-brick). Inside a DietStack container the service already runs as root with
  the container's capabilities, which are exactly what its helpers are given (a
  helper cannot hold more than its container), so the helpers separate nothing
  here. Made in process, a privileged call is the same function called
  directly, as oslo.privsep does in client mode off.
- oslo.service's threading backend hands every service to cotyledon, which
  spawns a child per worker and stays behind to supervise it, even for one
  worker (heat-engine, nova-scheduler, neutron's OVN maintenance worker) and one
  child per thread worker (neutron's periodic workers). The container already
  has a supervisor: Docker restarts it when its process ends, and a health
  check ends it when it stops working. So services asked for with one worker
  start in this process, as oslo.service's eventlet backend did; more than one
  worker still goes to cotyledon.
- oslo.service's eventlet backend forks a child per service given to its
  ProcessLauncher, even for one worker (cinder-volume's one backend). One-worker
  services there run under the same backend's ServiceLauncher, in this process,
  which handles SIGTERM and SIGHUP as the child would have.

- oslo.messaging up to 18.1 (2026.1) waits for the reply to an RPC call by
  looking at its reply queue twice a second (upstream's note cites bug 2035113 against blocking
  there under eventlet), so every call took at least half a second: a
  server's boot makes a dozen from nova-compute alone, and each Heat API
  request is one. Outside eventlet the wait blocks on the queue; under
  eventlet it looks every 10 ms. This one also applies to the APIs under
  uWSGI (dietstack/start/api_patches.py). From 18.2 (2026.2) upstream blocks
  on the queue itself, and its wait is left alone.
- oslo.messaging's RPC server under native threads (Heat's engine; Nova's
  daemons from 2026.2) hands each request to futurist's ThreadPoolExecutor,
  which starts a new thread for every request until it holds
  executor_thread_pool_size (64) and keeps them all for the process's life;
  each idle one wakes every second to see whether its pool is gone. So an idle
  cloud got busier the more it had been used (nova-compute held 108 threads
  after three `verify` runs). The server gets futurist's DynamicThreadPoolExecutor
  instead, with the same most: it starts a thread only when most of its threads
  are busy, and lets an idle one go when a request finds most of them idle.
  Green-thread servers (eventlet) are left alone: an idle green thread costs
  nothing. This one also applies under uWSGI (heat-api runs Heat's engine).
- Nova's VeNCrypt client, with which the console proxy reaches QEMU's VNC over
  TLS, calls ssl.wrap_socket, gone since Python 3.12; it is given an equivalent.

Each switch is made when the service itself first imports the module, so its
import order (and any monkey patching done before) stays as it was.
Standard library only: it runs in the service's own interpreter.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import queue
import runpy
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType, ModuleType
from typing import Any

PRIVSEP = "oslo_privsep.priv_context"
AMQP_DRIVER = "oslo_messaging._drivers.amqpdriver"
RPC_SERVER = "oslo_messaging.server"
LAUNCHERS = "oslo_service.backend._threading.service"
EVENTLET_LAUNCHERS = "oslo_service.backend._eventlet.service"
VENCRYPT = "nova.console.rfb.authvencrypt"


def make_privsep_in_process(module: ModuleType) -> None:
    """Every PrivContext of `module` runs its entrypoints in the caller and starts
    no daemon, even when a service asks it to."""
    context = module.PrivContext
    original_init = context.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.client_mode = False

    def start(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    context.__init__ = init
    context.start = start
    # A service that turns client mode back on would start the daemon again.
    context.set_client_mode = lambda self, enabled: None


def in_process_launcher(module: ModuleType, original: type) -> type:
    """A launcher class that starts one-worker services in this process and
    hands anything more to `original`, the backend's own launcher."""

    class InProcessLauncher:
        def __new__(cls, conf: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("no_fork"):
                return original(conf, *args, **kwargs)  # already in process
            return super().__new__(cls)

        def __init__(self, conf: Any, *args: Any, **kwargs: Any) -> None:
            module.opts.register_service_opts(conf)
            self.conf = conf
            self.backdoor_port = None
            self.services: list[Any] = []
            self.stopped = threading.Event()
            self._arguments = (conf, *args), kwargs
            self._pool: Any = None

        def launch_service(self, service: Any, workers: int | None = 1) -> None:
            if (workers or 1) > 1 or self._pool is not None:
                if self._pool is None:
                    args, kwargs = self._arguments
                    self._pool = original(*args, **kwargs)
                self._pool.launch_service(service, workers=workers)
                return
            module.common_service.check_service_base(service)
            service.backdoor_port = self.backdoor_port
            if not self.services:
                self._stop_on_sigterm()
            self.services.append(service)
            service.start()

        def wait(self) -> int:
            if self._pool is not None:
                return int(self._pool.wait() or 0)
            for service in self.services:
                service.wait()
            # Some services return from wait() while their threads work on
            # (neutron's maintenance worker): like a cotyledon worker, the process
            # lives until it is told to stop.
            self.stopped.wait()
            return 0

        def stop(self) -> None:
            for service in self.services:
                service.stop()
            if self._pool is not None:
                self._pool.stop()
            self.stopped.set()

        def restart(self) -> None:
            raise NotImplementedError()

        def _stop_on_sigterm(self) -> None:
            def graceful_stop(signo: int, frame: FrameType | None) -> None:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                # A stop that hangs must not keep the container from stopping.
                signal.signal(signal.SIGALRM, lambda signo, frame: os._exit(1))
                signal.alarm(int(self.conf.graceful_shutdown_timeout or 0))
                self.stop()
                os._exit(0)

            signal.signal(signal.SIGTERM, graceful_stop)

    InProcessLauncher.__name__ = InProcessLauncher.__qualname__ = f"InProcess{original.__name__}"
    return InProcessLauncher


def make_launchers_in_process(module: ModuleType) -> None:
    """oslo.service's threading launchers start one-worker services in this process."""
    module.ServiceLauncher = in_process_launcher(module, module.ServiceLauncher)  # type: ignore[attr-defined]
    module.ProcessLauncher = in_process_launcher(module, module.ProcessLauncher)  # type: ignore[attr-defined]


def eventlet_in_process_launcher(module: ModuleType) -> type:
    """A ProcessLauncher of the eventlet backend that runs one-worker services
    under the backend's own ServiceLauncher, in this process."""
    original = module.ProcessLauncher

    class InProcessProcessLauncher:
        def __init__(self, conf: Any, wait_interval: float = 0.01, **kwargs: Any) -> None:
            self._conf = conf
            self._wait_interval = wait_interval
            self._kwargs = kwargs
            self._launcher: Any = None

        def launch_service(self, service: Any, workers: int | None = 1) -> None:
            in_process = (workers or 1) == 1
            if self._launcher is None:
                self._launcher = (
                    module.ServiceLauncher(self._conf, **self._kwargs)
                    if in_process
                    else original(self._conf, self._wait_interval, **self._kwargs)
                )
            elif in_process != isinstance(self._launcher, module.ServiceLauncher):
                # One process cannot both serve in itself and supervise forks.
                raise ValueError("in_process.py: one-worker and multi-worker services mixed")
            self._launcher.launch_service(service, workers=workers)

        def wait(self) -> Any:
            return self._launcher.wait() if self._launcher is not None else 0

        def stop(self) -> None:
            if self._launcher is not None:
                self._launcher.stop()

    return InProcessProcessLauncher


def make_eventlet_launchers_in_process(module: ModuleType) -> None:
    module.ProcessLauncher = eventlet_in_process_launcher(module)  # type: ignore[attr-defined]


#: How often a caller under eventlet looks for its RPC reply (oslo.messaging: 0.5 s).
GREEN_REPLY_POLL = 0.01


def upstream_polls(get: Callable[..., Any]) -> bool:
    """Whether oslo.messaging's own wait polls its reply queue (up to 18.1, in 2026.1).
    From 18.2 (2026.2) it blocks on the queue itself, and is left as it is."""
    import inspect

    try:
        return "block=False" in inspect.getsource(get)
    except (OSError, TypeError):
        return False


def make_reply_wait_blocking(module: ModuleType) -> None:
    """An RPC caller takes its reply when it arrives: it blocks on its reply queue,
    or under eventlet, where upstream chose to poll rather than block (bug
    2035113), it keeps polling but every 10 ms instead of every 500."""
    waiters = module.ReplyWaiters
    if not upstream_polls(waiters.get):
        return

    def get(self: Any, msg_id: str, timeout: float | None) -> Any:
        replies = self._queues[msg_id]
        # queue.Empty at the timeout: the caller turns it into MessagingTimeout.
        if not module.eventletutils.is_monkey_patched("thread"):
            return replies.get(block=True, timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return replies.get(block=False)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            time.sleep(GREEN_REPLY_POLL)

    waiters.get = get


def make_rpc_pools_grow_on_demand(module: ModuleType) -> None:
    """Each RPC server of `module` that would run its requests in futurist's
    ThreadPoolExecutor runs them in an OnDemandPool of the same most instead."""
    import futurist

    server = module.MessageHandlingServer
    init = server.__init__
    pool = on_demand_pool_class(futurist)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self._executor_cls is futurist.ThreadPoolExecutor:
            self._executor_cls = pool

    server.__init__ = __init__


def on_demand_pool_class(futurist: ModuleType) -> type:
    """futurist's DynamicThreadPoolExecutor, started the way oslo.messaging starts
    its executor (with max_workers alone)."""

    class OnDemandPool(futurist.DynamicThreadPoolExecutor):  # type: ignore[misc,name-defined]
        """Grows by a thread when a request finds most threads busy (80 %), up to
        `max_workers`; lets one go when a request finds most of them idle (40 %
        busy or fewer), down to one."""

        _dead_workers: list[threading.Thread]

        def __init__(self, max_workers: int) -> None:
            # futurist wants its least below its most; a pool of one stays one.
            super().__init__(max_workers=max(max_workers, 2))
            self._max_workers = max_workers

        def _maybe_spin_up(self) -> bool:
            # futurist keeps each thread it let go until maintain() or shutdown()
            # joins it; those that have ended are forgotten at each request
            # instead, so a server that runs for months does not collect them.
            self._dead_workers = [w for w in self._dead_workers if w.is_alive()]
            return bool(super()._maybe_spin_up())

    return OnDemandPool


def give_vencrypt_a_tls_client(module: ModuleType) -> None:
    """Nova's VeNCrypt client (the console proxy's TLS to QEMU's VNC) calls
    ssl.wrap_socket, which Python 3.12 removed. It gets the same call made with an
    SSLContext: the proxy's certificate presented, QEMU's verified against the CA
    given. QEMU is reached at the address its node reported; the chain, of the
    nodes' CA, is what identifies it."""
    import ssl
    import types

    def wrap_socket(
        sock: Any,
        keyfile: str | None = None,
        certfile: str | None = None,
        server_side: bool = False,
        cert_reqs: int = ssl.CERT_REQUIRED,
        ca_certs: str | None = None,
    ) -> Any:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.VerifyMode(cert_reqs)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        return context.wrap_socket(sock, server_side=server_side)

    shim = types.ModuleType("ssl")
    shim.__dict__.update(vars(ssl))
    shim.wrap_socket = wrap_socket  # type: ignore[attr-defined]
    module.ssl = shim  # type: ignore[attr-defined]


#: module -> what is changed in it once it is loaded
PATCHES: dict[str, Callable[[ModuleType], None]] = {
    PRIVSEP: make_privsep_in_process,
    LAUNCHERS: make_launchers_in_process,
    EVENTLET_LAUNCHERS: make_eventlet_launchers_in_process,
    AMQP_DRIVER: make_reply_wait_blocking,
    RPC_SERVER: make_rpc_pools_grow_on_demand,
    VENCRYPT: give_vencrypt_a_tls_client,
}


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a module of `patches` the usual way and patches it once loaded."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches
        self.loaders: dict[str, importlib.abc.Loader] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self.loaders[fullname] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loaders[spec.name].create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loaders[module.__name__].exec_module(module)
        self.patches[module.__name__](module)


def install(modules: Sequence[str] = tuple(PATCHES)) -> None:
    """Patch these modules of PATCHES (all of them by default) when first imported."""
    sys.meta_path.insert(0, _PatchOnImport({name: PATCHES[name] for name in modules}))


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: in_process.py COMMAND|SCRIPT [ARG ...]")
    # A command on PATH, or a script of DietStack's own given by its path.
    own_script = os.path.isabs(argv[0]) and os.path.isfile(argv[0])
    script = argv[0] if own_script else shutil.which(argv[0])
    if script is None:
        raise SystemExit(f"in_process.py: {argv[0]}: command not found")
    # This file's directory is not the service's: nothing in it may shadow a module.
    del sys.path[0]
    install()
    sys.argv = [script, *argv[1:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Nova's conductor and scheduler, and Cinder's scheduler and volume service, each
pair in one process: both Services start on one launcher, each under its own name."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from dietstack import services
from dietstack.start import cinder_services, nova_services

from .helpers import make_env


class Launcher:
    def __init__(self) -> None:
        self.launched: list[tuple[str, int]] = []
        self.services: list[Any] = []
        self.waited = False

    def launch_service(self, service: Any, workers: int = 1) -> None:
        self.launched.append((service.binary, workers))
        self.services.append(service)

    def wait(self) -> None:
        self.waited = True


class Row:
    def __init__(self) -> None:
        self.report_count = 0
        self.saved = False

    def save(self, retry: bool) -> None:
        self.saved = True


def service_module(launcher: Launcher) -> types.SimpleNamespace:
    class Service:
        created = 0

        def __init__(self, binary: str) -> None:
            self.binary = binary
            Service.created += 1
            self.origin_service_id = Service.created

        @classmethod
        def create(cls, binary: str, **kwargs: Any) -> Service:
            return cls(binary)

    module = types.SimpleNamespace(Service=Service, _launcher=None)

    def serve(server: Any, workers: int) -> None:
        module._launcher = launcher
        launcher.launch_service(server, workers)

    module.serve = serve
    module.wait = launcher.wait
    module.process_launcher = lambda: launcher
    return module


@pytest.fixture
def fake_modules() -> Iterator[dict[str, types.ModuleType]]:
    added: dict[str, types.ModuleType] = {}
    saved = dict(sys.modules)
    yield added
    sys.modules.clear()
    sys.modules.update(saved)


def install(modules: dict[str, types.ModuleType], name: str, **attributes: Any) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    modules[name] = module
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def test_nova_conductor_and_scheduler_start_on_one_launcher(
    fake_modules: dict[str, types.ModuleType],
) -> None:
    launcher = Launcher()
    nothing = types.SimpleNamespace
    conf = nothing(conductor=nothing(workers=None), scheduler=nothing(workers=None))
    objects = nothing(register_all=lambda: None, Service=nothing(enable_min_version_cache=list))
    reset: list[str] = []
    for name in ("nova", "nova.cmd", "nova.conductor", "nova.scheduler"):
        install(fake_modules, name)
    install(
        fake_modules,
        "nova.cmd.conductor",
        config=nothing(parse_args=lambda argv: None),
        logging=nothing(setup=lambda conf, name: None),
        objects=objects,
        gmr_opts=nothing(set_defaults=lambda conf: None),
        gmr=nothing(TextGuruMeditation=nothing(setup_autorun=lambda version, conf: None)),
        version="34.0.0",
        service=service_module(launcher),
        CONF=conf,
        thread_pool_factory=nothing(reset_all_executors=lambda: reset.append("reset")),
    )
    install(fake_modules, "nova.conductor.rpcapi", RPC_TOPIC="conductor")
    install(fake_modules, "nova.scheduler.rpcapi", RPC_TOPIC="scheduler")

    nova_services.main()

    assert launcher.launched == [("nova-conductor", 1), ("nova-scheduler", 1)]
    assert launcher.waited and reset == ["reset"]


def test_cinder_scheduler_starts_beside_each_volume_backend(
    fake_modules: dict[str, types.ModuleType],
) -> None:
    launcher = Launcher()
    for name in ("cinder", "cinder.cmd"):
        install(fake_modules, name)
    install(fake_modules, "cinder.context", get_admin_context=lambda: "admin")
    rows = {1: Row(), 2: Row()}
    objects = types.SimpleNamespace(
        Service=types.SimpleNamespace(get_by_id=lambda context, row: rows[row])
    )

    def launch_backend(into: Launcher, backend: str) -> None:
        into.launched.append((f"cinder-volume@{backend}", 1))

    def main() -> None:
        # What cinder-volume's main does once configured: launch its services.
        fake_modules["cinder.cmd.volume"]._launch_services()

    install(
        fake_modules,
        "cinder.cmd.volume",
        service=service_module(launcher),
        objects=objects,
        CONF=types.SimpleNamespace(enabled_backends=["nfs", ""]),
        _launch_service=launch_backend,
        _ensure_service_started=lambda: None,
        _launch_services=lambda: None,
        main=main,
    )

    cinder_services.main()

    assert launcher.launched == [("cinder-scheduler", 1), ("cinder-volume@nfs", 1)]
    assert launcher.waited
    # Cinder's own report_state finds a row by the last started Service's id: the
    # scheduler reports on its own row (id 1) instead.
    scheduler = launcher.services[0]
    scheduler.report_state()
    assert (rows[1].report_count, rows[1].saved, rows[2].report_count) == (1, True, 0)


def test_no_container_of_its_own_for_either_scheduler() -> None:
    names = {container.name for container in services.all_containers(make_env())}
    assert {"nova-conductor", "cinder-volume"} <= names
    assert not {"nova-scheduler", "cinder-scheduler"} & names

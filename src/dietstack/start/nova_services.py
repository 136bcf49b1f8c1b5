"""Nova's conductor and scheduler in one process.

    python3 in_process.py /usr/lib/dietstack/dietstack/start/nova_services.py

It reads nova.conf where Nova's commands do. Nova ships them as two commands,
nova-conductor and nova-scheduler, and each imports all of Nova again (about
110 MiB apiece). They share one configuration and talk to each other only over
RPC, and each is an oslo.service Service with its own RPC server: one launcher
runs both, as Nova's own commands would each run one. Each still reports to
Nova's service list under its own name, so `dietstack status` shows a failure of
either.

The conductor's command chooses the concurrency of the release (eventlet up to
2026.1, native threads from 2026.2, where nova-scheduler already ran with them);
the scheduler runs with it.

Runs in the nova image's interpreter, after in_process.py installed its patches.
"""

from __future__ import annotations

import sys


def main() -> None:
    # Imported first: it picks the concurrency backend before anything else loads.
    from nova.cmd import conductor as command
    from nova.conductor import rpcapi as conductor_rpcapi
    from nova.scheduler import rpcapi as scheduler_rpcapi

    config, objects, service, nova_conf = (
        command.config,
        command.objects,
        command.service,
        command.CONF,
    )
    config.parse_args(sys.argv)
    command.logging.setup(nova_conf, "nova")
    objects.register_all()
    command.gmr_opts.set_defaults(nova_conf)
    objects.Service.enable_min_version_cache()
    command.gmr.TextGuruMeditation.setup_autorun(command.version, conf=nova_conf)
    conductor = service.Service.create(binary="nova-conductor", topic=conductor_rpcapi.RPC_TOPIC)
    scheduler = service.Service.create(binary="nova-scheduler", topic=scheduler_rpcapi.RPC_TOPIC)
    reset_executors(command)
    service.serve(conductor, workers=nova_conf.conductor.workers or 1)
    service._launcher.launch_service(scheduler, workers=nova_conf.scheduler.workers or 1)
    service.wait()


def reset_executors(command: object) -> None:
    """What both commands do before oslo.service may fork workers: drop the
    thread pools made so far, so a worker makes its own (2026.1 and 2026.2
    name this differently)."""
    factory = getattr(command, "thread_pool_factory", None)
    if factory is not None:
        factory.reset_all_executors()
        return
    utils = command.utils  # type: ignore[attr-defined]
    utils.destroy_default_executor()
    utils.destroy_scatter_gather_executor()


if __name__ == "__main__":
    main()

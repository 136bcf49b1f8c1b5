"""Cinder's scheduler and volume service in one process.

    python3 in_process.py /usr/lib/dietstack/dietstack/start/cinder_services.py

It reads cinder.conf where Cinder's commands do. Cinder ships them as two
commands, cinder-scheduler and cinder-volume, and each imports all of Cinder
again (about 110 MiB apiece). They share one configuration and talk to each
other only over RPC; each is an oslo.service Service with its own RPC server.
cinder-volume's command already starts one Service per backend on one launcher:
the scheduler's Service is started on that launcher too. Each still reports to
Cinder's service list under its own name (`openstack volume service list`).

One thing in Cinder assumes a Service per process: a Service finds its own row
in the service list through a class attribute, `Service.service_id`, which
holds the id of the last Service started. That is the volume service's (the
scheduler starts first), which is what Cinder's cleanup records need; the
scheduler's heartbeat is given its own row instead (`own_heartbeat`).

Runs in the cinder image's interpreter, after in_process.py installed its patches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def main() -> None:
    # Imported first: it monkey-patches for eventlet before anything else loads,
    # as both of Cinder's commands do.
    from cinder.cmd import volume as command

    def launch_scheduler_and_backends() -> None:
        """cinder-volume's own launch, with the scheduler's Service added first."""
        launcher = command.service.process_launcher()
        scheduler = command.service.Service.create(binary="cinder-scheduler")
        scheduler.report_state = own_heartbeat(scheduler, command.objects)
        launcher.launch_service(scheduler)
        for backend in filter(None, command.CONF.enabled_backends):
            command._launch_service(launcher, backend)
        command._ensure_service_started()
        launcher.wait()

    command._launch_services = launch_scheduler_and_backends
    command.main()


def own_heartbeat(service: Any, objects: Any) -> Callable[[], None]:
    """What Service.report_state does every report_interval, on the row of
    `service` itself: one more report, which sets its updated_at."""
    import logging

    from cinder import context

    log = logging.getLogger(__name__)

    def report_state() -> None:
        try:
            row = objects.Service.get_by_id(context.get_admin_context(), service.origin_service_id)
            row.report_count += 1
            row.save(retry=False)
        except Exception:
            # As upstream's: a failed report must not end the timer that calls it.
            log.exception("%s: cannot report to the service list", service.binary)

    return report_state


if __name__ == "__main__":
    main()

"""Cinder's scheduler and volume service in one process.

    python3 in_process.py /usr/lib/dietstack/dietstack/start/cinder_services.py

It reads cinder.conf where Cinder's commands do. Cinder ships them as two
commands, cinder-scheduler and cinder-volume, and each imports all of Cinder
again (about 110 MiB apiece). They share one configuration and talk to each
other only over RPC; each is an oslo.service Service with its own RPC server.
cinder-volume's command already starts one Service per backend on one launcher:
the scheduler's Service is started on that launcher too. Each still reports to
Cinder's service list under its own name (`openstack volume service list`).

Runs in the cinder image's interpreter, after in_process.py installed its patches.
"""

from __future__ import annotations


def main() -> None:
    # Imported first: it monkey-patches for eventlet before anything else loads,
    # as both of Cinder's commands do.
    from cinder.cmd import volume as command

    def launch_scheduler_and_backends() -> None:
        """cinder-volume's own launch, with the scheduler's Service added first."""
        launcher = command.service.process_launcher()
        launcher.launch_service(command.service.Service.create(binary="cinder-scheduler"))
        for backend in filter(None, command.CONF.enabled_backends):
            command._launch_service(launcher, backend)
        command._ensure_service_started()
        launcher.wait()

    command._launch_services = launch_scheduler_and_backends
    command.main()


if __name__ == "__main__":
    main()

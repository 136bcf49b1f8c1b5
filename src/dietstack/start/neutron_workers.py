"""Neutron's background work in one process: its periodic tasks and the OVN
maintenance task (the sync of Neutron's database into OVN's and its repairs).

    python3 in_process.py /usr/lib/dietstack/dietstack/start/neutron_workers.py

It reads Neutron's configuration where Neutron's server commands do
(/etc/neutron/neutron.conf and /etc/neutron/plugins/ml2/ml2_conf.ini).

Neutron ships them as two commands, neutron-periodic-workers and
neutron-ovn-maintenance-worker, and each imports all of Neutron and its ML2/OVN
driver again (about 140 MiB apiece). Nothing in their work needs a process
boundary: the periodic tasks run as threads, and the maintenance task only needs
to be the one process whose driver holds the maintenance connections to OVN's
databases. Neutron's own `start_plugins_workers` starts both from one call (it
did, in neutron-server, before the API became WSGI-only); under in_process.py its
one-worker services start in this process rather than in a child each.

Runs in the neutron image's interpreter, after in_process.py installed its patches.
"""

from __future__ import annotations


def all_workers() -> None:
    from neutron import manager, service
    from neutron.api import extensions
    from neutron_lib.api import attributes
    from neutron_lib.callbacks import events, registry, resources

    # What neutron-periodic-workers and neutron-ovn-maintenance-worker each do first.
    manager.init()
    extensions.PluginAwareExtensionManager.get_instance().extend_resources(
        "2.0", attributes.RESOURCES
    )
    launcher = service.start_plugins_workers()
    registry.publish(resources.PROCESS, events.AFTER_SPAWN, None)
    launcher.wait()


def main() -> None:
    # Importing Neutron's command module first chooses oslo.service's threading
    # backend before anything else of oslo.service loads, as Neutron's own commands do.
    from neutron.cmd import server as commands

    commands.server.boot_server(all_workers)


if __name__ == "__main__":
    main()

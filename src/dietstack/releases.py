"""The OpenStack releases DietStack deploys, described as data: what each pins from
PyPI, which constraints file goes with it, and which releases may upgrade to it.

Only the openstack and horizon images differ between releases; the others (the
Debian packages of MariaDB, RabbitMQ, OVN, libvirt...) are the same for both, so
an upgrade leaves their containers, and the guests libvirt runs, alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from dietstack.errors import DietStackError


@dataclass(frozen=True)
class Release:
    name: str
    codename: str
    #: A SLURP release: the next SLURP upgrades from it directly, skipping one.
    slurp: bool
    #: The services, as released on PyPI.
    services: tuple[str, ...]
    #: Horizon and the Heat panels of the same release.
    dashboard: tuple[str, ...]
    #: Releases a running cloud may upgrade from, to this one (upstream tests these).
    upgrades_from: tuple[str, ...]
    #: What the services import without declaring it (the constraints pin its version).
    undeclared: tuple[str, ...] = ()

    @property
    def constraints_file(self) -> str:
        return f"upper-constraints-{self.name}.txt"

    @property
    def title(self) -> str:
        return f'{self.name} "{self.codename}"'


GAZPACHO = Release(
    name="2026.1",
    codename="Gazpacho",
    slurp=True,
    services=(
        "keystone==29.1.0",
        "glance==32.0.0",
        "nova==33.0.2",
        "neutron==28.0.2",
        "cinder==28.0.0",
        "openstack-heat==26.0.2",
        "openstack-placement==15.0.0",
    ),
    # Horizon as 2026.1's constraints pin it; heat-dashboard of the same series.
    dashboard=("horizon==25.7.3", "heat-dashboard==15.0.0"),
    upgrades_from=(),
)

HIBISCUS = Release(
    name="2026.2",
    codename="Hibiscus",
    slurp=False,
    services=(
        "keystone==30.0.0",
        "glance==33.0.0",
        "nova==34.0.0",
        "neutron==29.0.0",
        "cinder==29.0.0",
        # 27.0.1 is 27.0.0 with a fix to its stack-domain user handling.
        "openstack-heat==27.0.1",
        "openstack-placement==16.0.0",
    ),
    dashboard=("horizon==27.0.0", "heat-dashboard==16.0.0"),
    upgrades_from=("2026.1",),
    # neutron-db-manage imports it; in 2026.1 os-vif brought it, 5.x no longer does.
    undeclared=("pyroute2",),
)

#: Oldest first.
RELEASES: dict[str, Release] = {release.name: release for release in (GAZPACHO, HIBISCUS)}
NAMES = tuple(RELEASES)
#: What a new cloud gets: the newest release that passes every test.
DEFAULT = HIBISCUS.name


def named(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise DietStackError(
            f"DietStack does not deploy OpenStack {name!r}",
            hint=f"releases: {', '.join(NAMES)}",
        ) from None


def upgrade_problem(current: str, target: str) -> str | None:
    """Why `current` cannot be upgraded to `target` (None: it can)."""
    if target not in RELEASES:
        return f"DietStack does not deploy OpenStack {target!r} (releases: {', '.join(NAMES)})"
    if current == target:
        return f"the cloud already runs OpenStack {target}"
    if current in RELEASES and NAMES.index(target) < NAMES.index(current):
        return (
            f"{target} is older than {current}, which the cloud runs: OpenStack supports no "
            "downgrade (a backup taken before the upgrade, restored, brings the old release back)"
        )
    if current not in RELEASES[target].upgrades_from:
        supported = [name for name, release in RELEASES.items() if current in release.upgrades_from]
        return f"OpenStack supports no upgrade from {current} to {target}; from {current}: " + (
            ", ".join(supported) or "none"
        )
    return None


def upgrade_targets(current: str) -> list[str]:
    """The releases a cloud of `current` may upgrade to, oldest first."""
    return [name for name, release in RELEASES.items() if current in release.upgrades_from]

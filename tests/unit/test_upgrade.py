"""The upgrade's own logic: which release, what changes between releases (and what
must not), what refuses, and the pins while old and new services run together."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dietstack import services
from dietstack.app import cloud as clouds
from dietstack.app import upgrade
from dietstack.engine import settings
from dietstack.engine.converge import NodePaths
from dietstack.engine.upgradestate import UnderWay
from dietstack.errors import DietStackError
from dietstack.hosts.hostnet import HostNetwork
from dietstack.render import Env, render_files

from .helpers import make_env
from .test_converge import desired_all


def rendered(env: Env, container: str) -> dict[str, str]:
    found = services.find(env, container)
    return {path: content.decode() for path, (content, _) in render_files(found, None).items()}


def script(env: Env, step: str) -> str:
    return "".join(rendered(env, step).values())


def config_hashes(env: Env, tmp_path: Path) -> dict[str, str]:
    paths = NodePaths(tmp_path / "secrets.yaml", tmp_path / "overrides", tmp_path / "data")
    return {want.name: want.config_hash for want in desired_all(env, paths)}


def test_a_release_change_leaves_what_runs_the_guests_alone(tmp_path: Path) -> None:
    """Same images (shared by both releases) and same files: libvirt, OVN and Open
    vSwitch are not recreated, so no guest stops."""
    old = config_hashes(make_env(release="2026.1"), tmp_path)
    new = config_hashes(make_env(release="2026.2"), tmp_path)
    unchanged = {name for name in old if old[name] == new[name]}
    assert {"libvirt", "ovn-controller", "openvswitch-vswitchd", "openvswitch-db"} <= unchanged
    assert "neutron-server" not in unchanged and "glance-api" not in unchanged


def test_options_2026_2_removed_are_not_written_for_it() -> None:
    old, new = make_env(release="2026.1"), make_env(release="2026.2")
    assert "api_workers" in rendered(old, "neutron-server")["/etc/neutron/neutron.conf"]
    assert "api_workers" not in rendered(new, "neutron-server")["/etc/neutron/neutron.conf"]
    assert "bind_host" in rendered(old, "glance-api")["/etc/glance/glance-api.conf"]
    assert "bind_host" not in rendered(new, "glance-api")["/etc/glance/glance-api.conf"]


def test_while_upgrading_nova_is_pinned_and_schemas_are_only_expanded() -> None:
    pinned, plain = make_env(compute_rpc_pin="auto"), make_env()
    assert pinned.upgrading and not plain.upgrading
    assert (
        "[upgrade_levels]\ncompute = auto"
        in rendered(pinned, "nova-compute")["/etc/nova/nova.conf"]
    )
    assert "upgrade_levels" not in rendered(plain, "nova-conductor")["/etc/nova/nova.conf"]
    assert "db_sync --expand" in script(pinned, "keystone-bootstrap")
    assert "--contract" not in script(pinned, "keystone-bootstrap")
    assert "upgrade --expand" in script(pinned, "neutron-bootstrap")
    assert "db_sync --contract" in script(plain, "keystone-bootstrap")
    assert "upgrade heads" in script(plain, "neutron-bootstrap")


def test_the_target_is_the_newest_allowed_and_a_bad_one_is_refused() -> None:
    assert upgrade.chosen_target("2026.1", None) == "2026.2"
    with pytest.raises(DietStackError, match="nothing to upgrade to"):
        upgrade.chosen_target("2026.2", None)
    with pytest.raises(DietStackError, match="no downgrade.*nothing was changed"):
        upgrade.chosen_target("2026.2", "2026.1")


def test_the_release_line_is_rewritten_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("# a comment\nrelease: '2026.1'\n\n# another\ndata_dir: /srv\n")
    path.chmod(0o600)
    upgrade.set_release(path, "2026.2")
    assert path.read_text() == "# a comment\nrelease: '2026.2'\n\n# another\ndata_dir: /srv\n"
    assert path.stat().st_mode & 0o777 == 0o600
    bare = tmp_path / "bare.yaml"
    bare.write_text("data_dir: /srv\n")
    upgrade.set_release(bare, "2026.2")
    assert yaml.safe_load(bare.read_text()) == {"release": "2026.2", "data_dir": "/srv"}


def deployed_with(tmp_path: Path, host: HostNetwork, running: str, wanted: str) -> clouds.Inputs:
    data = tmp_path / "data"
    (data / "config").mkdir(parents=True)
    (data / "config" / "settings.yaml").write_text(f"release: '{running}'\n")
    config = tmp_path / "settings.yaml"
    config.write_text(f"release: '{wanted}'\ndata_dir: {data}\n")
    effective = settings.validate(yaml.safe_load(config.read_text()), host, config)
    return clouds.Inputs(config, effective, {}, ())


def test_deploy_refuses_a_release_change_and_names_upgrade(
    tmp_path: Path, host: HostNetwork
) -> None:
    inputs = deployed_with(tmp_path, host, "2026.1", "2026.2")
    with pytest.raises(DietStackError) as caught:
        clouds.refuse_a_release_change(inputs)
    assert "runs OpenStack 2026.1" in caught.value.message
    assert "dietstack upgrade --to 2026.2" in str(caught.value.hint)
    clouds.refuse_a_release_change(deployed_with(tmp_path / "b", host, "2026.2", "2026.2"))


def test_a_downgrade_through_the_settings_is_refused_without_naming_upgrade(
    tmp_path: Path, host: HostNetwork
) -> None:
    with pytest.raises(DietStackError) as caught:
        clouds.refuse_a_release_change(deployed_with(tmp_path, host, "2026.2", "2026.1"))
    assert "upgrade" not in str(caught.value.hint)


def test_an_upgrade_under_way_is_remembered(tmp_path: Path) -> None:
    assert UnderWay.read(tmp_path) is None
    UnderWay("2026.1", "2026.2", "/b.tar.gz").write(tmp_path)
    assert UnderWay.read(tmp_path) == UnderWay("2026.1", "2026.2", "/b.tar.gz")
    UnderWay.clear(tmp_path)
    assert UnderWay.read(tmp_path) is None


def test_deploy_refuses_to_run_while_an_upgrade_is_under_way(
    tmp_path: Path, host: HostNetwork
) -> None:
    inputs = deployed_with(tmp_path, host, "2026.2", "2026.2")
    UnderWay("2026.1", "2026.2", "/b.tar.gz").write(inputs.paths.state_dir)
    with pytest.raises(DietStackError) as caught:
        clouds.refuse_a_release_change(inputs)
    assert "under way" in caught.value.message
    assert "dietstack upgrade" in str(caught.value.hint) and "/b.tar.gz" in str(caught.value.hint)


def test_each_metadata_port_is_rewritten_and_keeps_its_description() -> None:
    from types import SimpleNamespace

    from dietstack.ops import upgradesteps

    updates: list[tuple[str, str]] = []
    ports = [SimpleNamespace(id="p1", description=""), SimpleNamespace(id="p2", description="x")]

    class Network:
        def ports(self, device_owner: str) -> list[SimpleNamespace]:
            assert device_owner == "network:distributed"
            return ports

        def update_port(self, port: SimpleNamespace, description: str) -> None:
            updates.append((port.id, description))

    conn = SimpleNamespace(network=Network())
    assert upgradesteps.refresh_metadata_ports(conn, lambda line: None) == 2
    assert updates == [("p1", " "), ("p1", ""), ("p2", "x "), ("p2", "x")]


def test_a_restarted_neutron_on_2026_2_forgets_its_last_start_time() -> None:
    for name in ("neutron-server", "neutron-workers"):
        new = services.find(make_env(release="2026.2"), name).prepare
        assert "rm -f /tmp/neutron_start_time*" in new, name
        assert not any(
            "neutron_start_time" in step for step in services.find(make_env(), name).prepare
        )

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pytest

from dietstack import services
from dietstack.engine import secrets
from dietstack.model import IniFile
from dietstack.render import Env, config_hash, merge, read_overrides, render_files, render_ini

from .helpers import SETTINGS


@pytest.fixture
def env() -> Env:
    settings = dict(SETTINGS)
    values = {
        name: f"{name[:20]}-{i:02d}-secretvalue" for i, name in enumerate(secrets.names(["node1"]))
    }
    return Env(settings, values)


def test_ini_rendering() -> None:
    text = render_ini({"DEFAULT": {"debug": False, "hosts": ["a", "b"]}, "x": {"n": 1}})
    assert "[DEFAULT]\ndebug = false\nhosts = a,b\n" in text
    assert "[x]\nn = 1\n" in text


def test_overrides_add_and_replace_options(tmp_path: Path) -> None:
    path = tmp_path / "nova.conf"
    path.write_text("[DEFAULT]\ndebug = true\n[vnc]\nenabled = false\n[new]\nKey = V\n")
    merged = merge({"vnc": {"enabled": True, "port": 1}}, read_overrides(path))
    assert merged == {
        "vnc": {"enabled": "false", "port": 1},
        "new": {"Key": "V"},
        "DEFAULT": {"debug": "true"},
    }


def test_service_override_file_is_merged_into_the_rendered_file(env: Env, tmp_path: Path) -> None:
    (tmp_path / "nova").mkdir()
    (tmp_path / "nova" / "nova.conf").write_text("[DEFAULT]\ndebug = true\n")
    nova_api = services.find(env, "nova-api")
    content, mode = render_files(nova_api, tmp_path)["/etc/nova/nova.conf"]
    assert "debug = true" in content.decode() and "[keystone_authtoken]" in content.decode()
    assert mode == 0o640
    keystone = services.find(env, "keystone")
    assert (
        "debug" not in render_files(keystone, tmp_path)["/etc/keystone/keystone.conf"][0].decode()
    )


def test_every_container_renders_and_names_are_unique(env: Env, tmp_path: Path) -> None:
    containers = services.all_containers(env)
    names = [c.name for c in containers]
    assert len(names) == len(set(names))
    for container in containers:
        files = render_files(container, tmp_path)
        assert len(files) == len(container.files), container.name


def test_secrets_never_reach_commands_environment_or_labels(env: Env) -> None:
    """Only rendered files may hold secrets: commands and env show up in `docker inspect`."""
    for container in services.all_containers(env):
        visible = str({k: v for k, v in asdict(container).items() if k != "files"})
        for name, value in env.secrets.items():
            assert value not in visible, f"{name} visible in {container.name}"


def test_bootstrap_scripts_are_owner_only(env: Env) -> None:
    for container in services.all_containers(env):
        if container.oneshot:
            script = container.files[-1]
            assert script.mode == 0o700 and container.command[-1] == script.path


def test_config_hash_follows_image_files_and_spec(env: Env, tmp_path: Path) -> None:
    container = services.find(env, "glance-api")
    base = config_hash(container, "sha256:a", tmp_path)
    assert config_hash(container, "sha256:a", tmp_path) == base
    assert config_hash(container, "sha256:b", tmp_path) != base
    assert config_hash(replace(container, command=("true",)), "sha256:a", tmp_path) != base
    (tmp_path / "glance").mkdir()
    (tmp_path / "glance" / "glance-api.conf").write_text("[DEFAULT]\ndebug = true\n")
    assert config_hash(container, "sha256:a", tmp_path) != base


def test_every_api_answers_on_the_management_address(env: Env) -> None:
    for service in services.SERVICES:
        for container in service.containers(env):
            for file in container.files:
                if isinstance(file, IniFile) and "uwsgi" in file.sections:
                    uwsgi = file.sections["uwsgi"]
                    listen = uwsgi.get("for") or uwsgi.get("https-socket") or uwsgi.get("https")
                    listen = f"{listen} {uwsgi.get('http-socket', '')}"
                    for address in str(listen).split():
                        assert address.startswith("192.168.1.20:"), container.name
                    # HTTPS only, with the cloud's certificate.
                    assert "http" not in uwsgi, container.name
                    socket = str(uwsgi.get("https-socket") or uwsgi.get("https"))
                    assert socket.endswith(
                        ",/etc/dietstack-tls/public.crt,/etc/dietstack-tls/public.key"
                    )
                    assert uwsgi["processes"] == 1


def test_public_subnet_keeps_the_gateway_out_of_the_pool(env: Env) -> None:
    from dietstack.services import neutron

    subnet = neutron.public_subnet(env)
    assert subnet["gateway_ip"] == "172.24.4.1"
    assert subnet["allocation_pools"] == [{"start": "172.24.4.10", "end": "172.24.4.254"}]
    small = Env({**env.settings, "external_cidr": "10.0.0.0/28"}, env.secrets)
    assert neutron.public_subnet(small)["allocation_pools"][0]["start"] == "10.0.0.2"


def test_heat_runs_one_engine_beside_its_apis_in_each_worker(env: Env) -> None:
    more = Env({**env.settings, "api_workers": 3}, env.secrets)
    assert "heat-engine" not in {c.name for c in services.all_containers(more)}
    api = services.find(more, "heat-api")
    uwsgi = next(f for f in api.files if isinstance(f, IniFile) and "uwsgi" in f.sections)
    options = uwsgi.sections["uwsgi"]
    assert options["module"] == "dietstack.start.heat_services:application"
    assert options["processes"] == 3
    assert "8004=heat.wsgi.api:application 8000=heat.wsgi.cfn:application" in str(options["env"])


def test_sister_apis_share_one_process_with_a_socket_each(env: Env) -> None:
    from dietstack.services import nova

    api = next(c for c in nova.containers(env) if c.name == "nova-api")
    uwsgi = next(f for f in api.files if isinstance(f, IniFile) and "uwsgi" in f.sections)
    options = uwsgi.sections["uwsgi"]
    assert options["module"] == "dietstack.start.wsgi_ports:application"
    assert options["env"] == (
        "DIETSTACK_WSGI_APPS=8774=nova.wsgi.osapi_compute:application "
        "8775=nova.wsgi.metadata:application 8778=placement.wsgi.api:application"
    )
    # uWSGI reads options in order: the socket loop must close the file.
    assert list(options)[-3:] == ["for", "https-socket", "endfor"]
    assert options["for"] == "192.168.1.20:8774 192.168.1.20:8775 192.168.1.20:8778"
    assert [port.number for port in api.ports] == [8774, 8775, 8778]
    assert not any(c.name == "nova-metadata" for c in nova.containers(env))


def test_placement_runs_in_nova_apis_process_with_its_own_file(env: Env) -> None:
    """Placement has no container of its own; nova-api carries its file, and Nova's
    calls to it cannot wait for ever on a process whose threads are all busy."""
    names = [c.name for c in services.all_containers(env)]
    assert "placement-api" not in names and "placement-bootstrap" in names
    api = services.find(env, "nova-api")
    paths = [f.path for f in api.files]
    assert "/etc/placement/placement.conf" in paths and "/etc/nova/nova.conf" in paths
    uwsgi = next(f for f in api.files if isinstance(f, IniFile) and "uwsgi" in f.sections)
    assert int(str(uwsgi.sections["uwsgi"]["threads"])) > 1
    nova_conf = next(f for f in api.files if f.path == "/etc/nova/nova.conf")
    assert isinstance(nova_conf, IniFile) and nova_conf.sections["placement"]["timeout"] == 60
    assert 8778 in [port.number for port in services.declared_ports(env)]


def test_heats_trustee_login_takes_a_stacks_trust(env: Env) -> None:
    """Heat adds a stack's trust to its [trustee] login: keystoneauth must accept it
    (a project there too would be refused as a second scope)."""
    from keystoneauth1 import exceptions, loading, plugin, session

    container = services.find(env, "heat-api")
    ini = next(f for f in container.files if isinstance(f, IniFile) and "trustee" in f.sections)
    options = {str(k): str(v) for k, v in ini.sections["trustee"].items()}
    options["auth_url"] = "http://127.0.0.1:9/v3"
    loader: loading.BaseLoader[plugin.BaseAuthPlugin] = loading.get_plugin_loader(
        options["auth_type"]
    )
    known = {option.dest for option in loader.get_options()}
    auth = loader.load_from_options(
        **{k: v for k, v in options.items() if k in known}, trust_id="a-trust"
    )
    with pytest.raises(exceptions.ConnectFailure):  # it got as far as asking Keystone
        auth.get_auth_ref(session.Session())


def test_a_failed_build_is_tried_on_another_host_only_where_there_is_one(env: Env) -> None:
    def attempts(settings: dict[str, object]) -> object:
        values = {**env.secrets, "rabbitmq_node2_password": "node2-rabbitmq-secretvalue"}
        conf = services.find(Env({**env.settings, **settings}, values), "nova-conductor")
        ini = conf.files[0]
        assert isinstance(ini, IniFile)
        return ini.sections["scheduler"]["max_attempts"]

    # Alone, the build's own fault (a full disk, say) is what the user sees.
    assert attempts({}) == 1
    control = {"name": "node1", "management_ip": "192.168.1.20", "roles": ["control", "compute"]}
    compute = {"name": "node2", "management_ip": "192.168.1.21", "roles": ["compute"]}
    assert attempts({"nodes": [control]}) == 1
    assert attempts({"nodes": [control, compute]}) == 3

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from dietstack.engine import settings, settingsfile
from dietstack.errors import DietStackError, SettingsError
from dietstack.hosts.hostnet import HostNetwork

PATH = Path("/etc/dietstack/settings.yaml")


def problems(raw: dict[str, object], host: HostNetwork) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        settings.validate(raw, host, PATH)
    return caught.value.problems


def test_defaults_work_on_a_single_nic_host(host: HostNetwork) -> None:
    effective = settings.validate({}, host, PATH)
    assert effective.release == "2026.2"
    assert effective.management_interface == "eth0"
    assert effective.management_ip == ipaddress.IPv4Address("192.168.1.20")
    assert effective.external_cidr == ipaddress.IPv4Network("172.24.4.0/24")
    assert effective.external_interface == ""
    assert effective.api_workers == 1


def test_default_external_range_avoids_the_hosts_networks() -> None:
    host = HostNetwork(
        addresses={"eth0": (ipaddress.IPv4Interface("172.24.4.9/16"),)},
        routes=(ipaddress.IPv4Network("172.25.0.0/16"),),
        default_interface="eth0",
    )
    effective = settings.validate({}, host, PATH)
    assert effective.external_cidr == ipaddress.IPv4Network("10.213.4.0/24")


def test_host_without_default_route_uses_first_addressed_interface() -> None:
    host = HostNetwork(
        addresses={
            "lo": (ipaddress.IPv4Interface("127.0.0.1/8"),),
            "ens3": (),
            "ens4": (ipaddress.IPv4Interface("10.0.0.5/24"),),
        },
    )
    effective = settings.validate({}, host, PATH)
    assert (effective.management_interface, str(effective.management_ip)) == ("ens4", "10.0.0.5")


def test_unknown_key_suggests_the_closest(host: HostNetwork) -> None:
    found = problems({"api_worker": 2}, host)
    assert found == ["api_worker: unknown setting; did you mean 'api_workers'?"]


def test_bad_ip_address(host: HostNetwork) -> None:
    (found,) = problems({"management_ip": "192.168.1.300"}, host)
    assert found.startswith("management_ip: '192.168.1.300' expected an IPv4 address")


def test_bad_cidr(host: HostNetwork) -> None:
    (found,) = problems({"external_cidr": "172.24.4.0"}, host)
    assert "external_cidr" in found and "CIDR" in found


def test_cidr_with_host_bits_suggests_the_network(host: HostNetwork) -> None:
    (found,) = problems({"external_cidr": "172.24.4.1/24"}, host)
    assert "did you mean 172.24.4.0/24?" in found


def test_cidr_too_small(host: HostNetwork) -> None:
    (found,) = problems({"external_cidr": "172.24.4.0/30"}, host)
    assert "too small" in found


def test_interface_that_does_not_exist(host: HostNetwork) -> None:
    (found,) = problems({"management_interface": "wlan7"}, host)
    assert "'wlan7' does not exist" in found and "eth0" in found


def test_management_ip_not_on_the_interface(host: HostNetwork) -> None:
    (found,) = problems({"management_ip": "192.168.1.99"}, host)
    assert "not an address of eth0 (192.168.1.20)" in found


def test_external_range_overlapping_the_lan(host: HostNetwork) -> None:
    (found,) = problems({"external_cidr": "192.168.0.0/16"}, host)
    assert "contains management_ip" in found


def test_external_range_overlapping_another_host_network(host: HostNetwork) -> None:
    (found,) = problems({"external_cidr": "172.17.5.0/24"}, host)
    assert "overlaps 172.17.0.0/16" in found and "choose another range" in found


def test_external_range_on_our_own_bridge_is_not_a_collision(host: HostNetwork) -> None:
    # As probed after a deploy: the bridge's address is listed, its route is not.
    deployed = HostNetwork(
        addresses={**host.addresses, "br-ex": (ipaddress.IPv4Interface("172.24.4.1/24"),)},
        routes=host.routes,
        default_interface="eth0",
    )
    assert settings.validate({"external_cidr": "172.24.4.0/24"}, deployed, PATH)


def test_external_interface_must_be_spare(host: HostNetwork) -> None:
    assert (
        settings.validate({"external_interface": "eth1"}, host, PATH).external_interface == "eth1"
    )
    (found,) = problems({"external_interface": "eth0"}, host)
    assert "is the management interface" in found
    (found,) = problems({"external_interface": "docker0"}, host)
    assert "has an IP address" in found


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("api_workers", "two", "expected a whole number, got str"),
        ("api_workers", True, "expected a whole number, got bool"),
        ("api_workers", 0, "between 1 and 32"),
        ("management_interface", 5, "expected text, got int"),
        ("virt_type", "xen", "must be one of: auto, kvm, qemu"),
        ("release", "2025.2", "must be one of: 2026.1, 2026.2"),
        ("data_dir", "var/lib", "absolute path"),
        ("debian_mirror", "ftp://x", "http:// or https:// URL"),
        ("nfs_share", "nas.lan", "host:/path"),
        ("management_ip", "127.0.0.1", "loopback"),
        ("external_cidr", "169.254.0.0/24", "link-local"),
        ("external_cidr", "224.0.0.0/24", "multicast"),
        ("external_cidr", "127.0.0.0/24", "loopback"),
        ("dashboard_port", 0, "between 1 and 65535"),
        ("dashboard_port", "80", "expected a port number, got str"),
        ("dashboard_names", ["http://cloud.lan"], "no http://, no port"),
        ("dashboard_names", ["cloud.lan:8080"], "not a host name"),
    ],
    ids=[
        "word",
        "bool",
        "zero",
        "number-for-text",
        "choice",
        "release",
        "relative",
        "url",
        "nfs-share",
        "loopback-ip",
        "link-local-range",
        "multicast-range",
        "loopback-range",
        "port-zero",
        "port-text",
        "name-url",
        "name-port",
    ],
)
def test_wrong_type_or_value(host: HostNetwork, key: str, value: object, expected: str) -> None:
    (found,) = problems({key: value}, host)
    assert found.startswith(f"{key}: ") and expected in found


def test_all_problems_are_reported_at_once(host: HostNetwork) -> None:
    found = problems({"api_workers": "x", "virt_type": "xen", "colour": "blue"}, host)
    assert len(found) == 3


def test_error_names_the_file_and_how_to_fix(host: HostNetwork) -> None:
    with pytest.raises(SettingsError) as caught:
        settings.validate({"virt_type": "xen"}, host, PATH)
    text = str(caught.value)
    assert str(PATH) in text and "Hint: edit" in text


def test_written_file_round_trips_with_comments(host: HostNetwork, tmp_path: Path) -> None:
    effective = settings.validate({}, host, PATH)
    text = settings.render_file(effective)
    assert "# Hypervisor:" in text
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    assert settings.load(path, host) == effective
    assert yaml.safe_load(text)["management_ip"] == "192.168.1.20"


def test_missing_file_means_defaults(host: HostNetwork, tmp_path: Path) -> None:
    assert settings.load(tmp_path / "none.yaml", host) == settings.validate({}, host, PATH)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a: [1,\n", "not valid YAML at line"), ("- a\n- b\n", "must contain `key: value`")],
    ids=["broken-yaml", "list"],
)
def test_unreadable_file(host: HostNetwork, tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(DietStackError, match=expected):
        settings.load(path, host)


def test_dashboard_names_as_list_or_text(host: HostNetwork) -> None:
    listed = settings.validate({"dashboard_names": ["cloud.home.lan", "10.0.0.5"]}, host, PATH)
    text = settings.validate({"dashboard_names": "cloud.home.lan, 10.0.0.5"}, host, PATH)
    assert listed.dashboard_names == text.dashboard_names == ("cloud.home.lan", "10.0.0.5")
    assert listed.as_dict()["dashboard_names"] == ["cloud.home.lan", "10.0.0.5"]


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_bytes(b"data_dir: /var/lib/\xff\xfe\n")
    with pytest.raises(DietStackError) as caught:
        settingsfile.read_raw(path)
    assert "is not UTF-8 text" in caught.value.message and str(path) in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/", "is the root file system"),
        ("//", "is the root file system"),
        ("/proc/self", "is inside /proc"),
        ("/sys/fs", "is inside /sys"),
        ("/dev", "is /dev"),
        ("/run/dietstack", "is inside /run"),
        ("/boot", "is /boot"),
        ("/etc/dietstack", "is inside /etc"),
        ("//etc/x", "is inside /etc"),
        ("/usr/local/dietstack", "is inside /usr"),
        ("/bin", "is /bin"),
        ("/sbin", "is /sbin"),
        ("/lib64/x", "is inside /lib64"),
        ("/root", "is /root"),
        ("/home", "a directory other programs share"),
        ("/var", "a directory other programs share"),
        ("/var/lib/", "a directory other programs share"),
        ("/tmp", "a directory other programs share"),
        ("/var/lib/../../etc", "without . or .. parts"),
        ("/var/lib/./dietstack", "without . or .. parts"),
        ("var/lib/dietstack", "must be an absolute path"),
    ],
)
def test_data_dir_that_holds_what_is_not_dietstacks_is_refused(
    host: HostNetwork, value: str, expected: str
) -> None:
    (found,) = problems({"data_dir": value}, host)
    assert found.startswith(f"data_dir: {value!r} ") and expected in found
    if "absolute" not in found:
        assert "set data_dir to a directory of its own such as /var/lib/dietstack" in found


def test_data_dir_that_is_a_link_to_a_system_directory_is_refused(
    host: HostNetwork, tmp_path: Path
) -> None:
    (tmp_path / "data").symlink_to("/etc")
    (found,) = problems({"data_dir": str(tmp_path / "data")}, host)
    assert "leads (through a link) to /etc" in found


@pytest.mark.parametrize(
    "value",
    [
        "/var/lib/dietstack",
        "/srv/dietstack",
        "/home/cloud/data",
        "/tmp/pytest-of-root/pytest-3/data0",
    ],
)
def test_data_dir_of_its_own_is_fine(host: HostNetwork, value: str) -> None:
    assert settings.validate({"data_dir": value}, host, PATH).data_dir == Path(value)


def test_data_dir_is_kept_in_its_plain_form(host: HostNetwork) -> None:
    effective = settings.validate({"data_dir": "/srv//dietstack/"}, host, PATH)
    assert effective.data_dir == Path("/srv/dietstack")

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
import yaml

from dietstack import cli
from dietstack.cli import setup_verbs
from dietstack.hosts import hostnet
from dietstack.hosts.hostnet import HostNetwork


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["dietstack", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch: pytest.MonkeyPatch, host: HostNetwork) -> None:
    monkeypatch.setattr(hostnet, "probe", lambda: host)


def test_help_lists_the_verbs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(["--help"], capsys, monkeypatch)
    assert code == 0
    assert "config" in out and "images" in out


@pytest.mark.parametrize("args", [["frobnicate"], ["images", "build", "--bogus"], ["config"]])
def test_usage_errors_are_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(args, capsys, monkeypatch)
    if args == ["config"]:  # a group without a verb shows its help instead
        assert code == 2 and "Commands:" in err and "init" in err
        return
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dietstack: error: ")
    assert "Traceback" not in err


def test_config_init_writes_settings_and_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "etc" / "settings.yaml"
    code, out, _ = run(["--config", str(path), "config", "init"], capsys, monkeypatch)
    assert code == 0
    assert yaml.safe_load(path.read_text())["management_interface"] == "eth0"
    secrets_file = tmp_path / "etc" / "secrets.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    # No secret value is ever printed.
    for value in yaml.safe_load(secrets_file.read_text()).values():
        assert value not in out


def test_config_init_keeps_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("api_workers: 2\n")
    code, _, err = run(["--config", str(path), "config", "init"], capsys, monkeypatch)
    assert code == 1 and "already exists" in err and "--force" in err
    assert path.read_text() == "api_workers: 2\n"


def test_config_show_prints_effective_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("api_workers: 3\n")
    code, out, _ = run(["--config", str(path), "config", "show"], capsys, monkeypatch)
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["api_workers"] == 3 and shown["management_ip"] == "192.168.1.20"


def test_invalid_settings_stop_before_anything_happens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("external_cidr: 192.168.1.0/24\nvirt_type: xen\n")

    def no_docker(say: object) -> None:
        raise AssertionError("Docker must not be touched with invalid settings")

    monkeypatch.setattr(setup_verbs, "ensure_docker", no_docker)
    code, _, err = run(["--config", str(path), "images", "build"], capsys, monkeypatch)
    assert code == 2
    assert "external_cidr: 192.168.1.0/24" in err and "virt_type: 'xen'" in err
    assert "Traceback" not in err


def test_restore_refuses_a_file_that_is_not_a_backup_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "backup.tar.gz"
    bogus.write_bytes(b"not a tar file at all")
    config = tmp_path / "etc" / "settings.yaml"
    code, _, err = run(["--config", str(config), "restore", str(bogus)], capsys, monkeypatch)
    assert code != 0 and "damaged or not a DietStack backup" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.tar.gz"]


def test_ca_prints_the_clouds_ca_certificate_once_deploy_made_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dietstack.engine import publictls, secrets

    config = tmp_path / "settings.yaml"
    secrets.ensure(secrets.secrets_path(config))
    code, _, err = run(["--config", str(config), "ca"], capsys, monkeypatch)
    assert code == 1 and "no CA certificate yet" in err and "dietstack deploy" in err
    values = secrets.ensure_public_tls(
        secrets.secrets_path(config), publictls.Names.of(["192.168.1.20"])
    )
    code, out, err = run(["--config", str(config), "ca"], capsys, monkeypatch)
    assert code == 0 and out == values["tls_ca_certificate"]
    assert publictls.fingerprint(out) in err


def test_a_full_disk_is_one_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(**_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/dietstack/x")

    monkeypatch.setattr(cli.cli, "main", full)
    code, _, err = run(["deploy"], capsys, monkeypatch)
    assert code == 1
    assert "no space left on the disk writing /var/lib/dietstack/x" in err
    assert "Traceback" not in err and "Hint: free space" in err

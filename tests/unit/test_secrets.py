from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from dietstack import secrets
from dietstack.errors import DietStackError


def test_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    first = secrets.ensure(path)
    assert set(first) == set(secrets.SECRET_NAMES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.ensure(path) == first


def test_values_are_strong_and_distinct(tmp_path: Path) -> None:
    values = secrets.ensure(tmp_path / "secrets.yaml")
    assert all(len(v) == 32 and v.isalnum() for v in values.values())
    assert len(set(values.values())) == len(values)
    assert len(values["heat_auth_encryption_key"]) == 32


def test_existing_values_are_kept_and_missing_ones_added(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump({"admin_password": "keep-me"}))
    values = secrets.ensure(path)
    assert values["admin_password"] == "keep-me"
    assert set(values) == set(secrets.SECRET_NAMES)
    assert yaml.safe_load(path.read_text()) == values


def test_unknown_values_survive(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    secrets.ensure(path)
    data = yaml.safe_load(path.read_text())
    data["from_a_newer_release"] = "x"
    path.write_text(yaml.safe_dump(data))
    assert secrets.ensure(path)["from_a_newer_release"] == "x"


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    secrets.ensure(path)
    path.chmod(0o644)
    secrets.ensure(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_damaged_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("admin_password: [oops\n")
    with pytest.raises(DietStackError, match="damaged"):
        secrets.ensure(path)
    assert path.read_text() == "admin_password: [oops\n"


def test_lives_beside_the_settings() -> None:
    assert secrets.secrets_path(Path("/etc/dietstack/settings.yaml")) == Path(
        "/etc/dietstack/secrets.yaml"
    )

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack.engine import cloudmark
from dietstack.errors import DietStackError

OURS = {"mariadb_root_password": "a" * 32}
THEIRS = {"mariadb_root_password": "b" * 32}


def test_a_new_data_dir_takes_any_secrets_and_remembers_them(tmp_path: Path) -> None:
    cloudmark.check(tmp_path / "data", tmp_path / "secrets.yaml", {})
    cloudmark.record(tmp_path / "data", OURS)
    assert cloudmark.recorded(tmp_path / "data") == cloudmark.fingerprint(OURS)
    assert "a" * 8 not in (tmp_path / "data" / cloudmark.MARK_FILE).read_text()
    cloudmark.check(tmp_path / "data", tmp_path / "secrets.yaml", OURS)


def test_another_clouds_secrets_are_refused(tmp_path: Path) -> None:
    cloudmark.record(tmp_path, OURS)
    with pytest.raises(DietStackError) as raised:
        cloudmark.check(tmp_path, tmp_path / "other" / "secrets.yaml", THEIRS)
    assert "belong to another cloud" in raised.value.message
    assert "destroy --data" in (raised.value.hint or "")


def test_no_secrets_for_a_data_dir_that_holds_a_cloud_is_refused(tmp_path: Path) -> None:
    cloudmark.record(tmp_path, OURS)
    with pytest.raises(DietStackError) as raised:
        cloudmark.check(tmp_path, tmp_path / "other" / "secrets.yaml", {})
    assert "no secrets in" in raised.value.message and "other" in raised.value.message


def test_a_cloud_from_before_fingerprints_is_known_by_its_database(tmp_path: Path) -> None:
    (tmp_path / "mariadb" / "mysql").mkdir(parents=True)
    with pytest.raises(DietStackError):
        cloudmark.check(tmp_path, tmp_path / "secrets.yaml", {})
    # Its own secrets are taken, and remembered from then on.
    cloudmark.check(tmp_path, tmp_path / "secrets.yaml", OURS)

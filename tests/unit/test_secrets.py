from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from dietstack.engine import keys, secrets
from dietstack.errors import DietStackError
from dietstack.model import PUBLIC_TRUST, SERVICES_TLS, Node
from tests import certificates


def test_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    first = secrets.ensure(path)
    # The public CA and certificate are made by ensure_public_tls, for the cloud's names.
    public = {*secrets.PUBLIC_TLS, PUBLIC_TRUST, *SERVICES_TLS, secrets.NODES_CRL, secrets.REVOKED}
    assert set(first) == set(secrets.names()) - public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.ensure(path) == first


def test_values_are_strong_and_distinct(tmp_path: Path) -> None:
    values = secrets.ensure(tmp_path / "secrets.yaml")
    passwords = [values[name] for name in secrets.SECRET_NAMES]
    assert all(len(v) == 32 and v.isalnum() for v in passwords)
    assert len(set(values.values())) == len(values)
    assert len(values["heat_auth_encryption_key"]) == 32


def test_existing_values_are_kept_and_missing_ones_added(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump({"admin_password": "keep-me"}))
    values = secrets.ensure(path)
    assert values["admin_password"] == "keep-me"
    assert set(values) == set(secrets.names()) - {
        *secrets.PUBLIC_TLS,
        PUBLIC_TRUST,
        *SERVICES_TLS,
        secrets.NODES_CRL,
        secrets.REVOKED,
    }
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


def test_key_pairs_are_made_together(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    values = secrets.ensure(path)
    assert values["nova_ssh_private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert values["nova_ssh_public_key"].startswith("ssh-ed25519 ")
    assert "BEGIN CERTIFICATE" in values["libvirt_ca_certificate"]
    # A pair with one half lost is made again as a whole.
    del values["nova_ssh_public_key"]
    path.write_text(yaml.safe_dump(values))
    again = secrets.ensure(path)
    assert again["nova_ssh_private_key"] != values["nova_ssh_private_key"]
    assert again["libvirt_ca_key"] == values["libvirt_ca_key"]


def test_node_certificates_follow_the_nodes_address(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    node = Node("compute-1", "192.168.1.21", ("compute",))
    first = secrets.ensure_node_certificates(path, [node])
    cert = first["libvirt_compute-1_certificate"]
    ca = first["libvirt_ca_certificate"]
    assert keys.certificate_fits(cert, ca, "compute-1", "192.168.1.21")
    assert not keys.certificate_fits(cert, ca, "compute-1", "192.168.1.22")
    assert not keys.certificate_fits(
        cert, keys.certificate_authority("other")[1], "compute-1", "192.168.1.21"
    )
    assert secrets.ensure_node_certificates(path, [node]) == first
    moved = secrets.ensure_node_certificates(path, [Node("compute-1", "192.168.1.22", ())])
    assert moved["libvirt_compute-1_certificate"] != cert
    assert yaml.safe_load(path.read_text()) == moved


def test_a_node_certificate_is_marked_as_a_nodes_and_others_are_not_fit() -> None:
    """libvirt admits the node organisation only: a certificate of the same CA without
    it (one made before the mark, or for anything else) is no node's."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from dietstack.model import NODE_ORGANIZATION

    ca_key, ca = keys.certificate_authority("test CA")
    _, cert = keys.node_certificate(ca_key, ca, "compute-1", "192.168.1.21")
    subject = x509.load_pem_x509_certificate(cert.encode()).subject
    organisations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [attribute.value for attribute in organisations] == [NODE_ORGANIZATION]
    _, other = certificates.not_a_nodes(ca_key, ca, "compute-1", "192.168.1.21")
    assert not keys.certificate_fits(other, ca, "compute-1", "192.168.1.21")


def test_a_removed_node_s_own_secrets_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    node = Node("compute-1", "192.168.1.21", ("compute",))
    before = secrets.ensure_node_certificates(path, [node])
    assert "rabbitmq_compute-1_password" in before and "libvirt_compute-1_key" in before
    after = secrets.forget_node(path, "compute-1")
    stored = yaml.safe_load(path.read_text())
    for name in ("rabbitmq_compute-1_password", "libvirt_compute-1_key"):
        assert name not in after and name not in stored
    assert after["admin_password"] == before["admin_password"]
    again = secrets.ensure_node_certificates(path, [node])
    assert again["rabbitmq_compute-1_password"] != before["rabbitmq_compute-1_password"]

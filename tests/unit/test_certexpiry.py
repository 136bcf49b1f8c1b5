"""What `status` warns of: certificates close to their end."""

from __future__ import annotations

import datetime

from dietstack.engine import certexpiry, keys, publictls, secrets
from dietstack.engine.publictls import Names
from dietstack.model import CONTROL_ROLES, Node

NAMES = Names.of(["192.168.1.20", "node1"])


def a_clouds_secrets(tmp_path: object) -> dict[str, str]:
    from pathlib import Path

    path = Path(str(tmp_path)) / "secrets.yaml"
    secrets.ensure_node_certificates(path, [Node("node1", "192.168.1.20", CONTROL_ROLES)])
    return secrets.ensure_public_tls(path, NAMES)


def test_a_fresh_cloud_warns_of_nothing_and_a_year_on_of_everything_but_the_cas(
    tmp_path: object,
) -> None:
    values = a_clouds_secrets(tmp_path)
    assert set(certexpiry.certificates(values)) == {
        "tls_ca_certificate",
        "tls_server_certificate",
        "libvirt_ca_certificate",
        "tls_services_certificate",
        "libvirt_node1_certificate",
    }
    assert certexpiry.warnings(values) == []
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=340)
    shown = certexpiry.warnings(values, now=later)
    assert any(line.startswith("the certificate of the APIs") for line in shown), shown
    assert any(line.startswith("node node1's certificate") for line in shown), shown
    assert all("dietstack certs renew" in line for line in shown)
    assert not any("CA" in line.split(" ends")[0] for line in shown)


def test_an_ended_certificate_of_the_users_is_theirs_to_renew(tmp_path: object) -> None:
    values = a_clouds_secrets(tmp_path)
    ca_key, ca = publictls.public_ca()
    key, cert = publictls.server_certificate(ca_key, ca, NAMES)
    theirs = {**values, "tls_server_certificate": cert, "tls_trust": ca}
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=400)
    (line,) = [w for w in certexpiry.warnings(theirs, now=after) if "tls_certificate" in w]
    assert "ended on" in line and "then run `dietstack deploy`" in line
    assert keys  # the nodes' CA module is what issued the others


def test_a_removed_nodes_certificate_is_revoked_and_the_rest_stay(tmp_path: object) -> None:
    from pathlib import Path

    from cryptography import x509

    path = Path(str(tmp_path)) / "secrets.yaml"
    nodes = [
        Node("node1", "192.168.1.20", CONTROL_ROLES),
        Node("compute-1", "192.168.1.21", ("compute",)),
    ]
    values = secrets.ensure_node_certificates(path, nodes)
    crl = x509.load_pem_x509_crl(values[secrets.NODES_CRL].encode())
    assert len(list(crl)) == 0
    gone = x509.load_pem_x509_certificate(values["libvirt_compute-1_certificate"].encode())
    after = secrets.forget_node(path, "compute-1")
    crl = x509.load_pem_x509_crl(after[secrets.NODES_CRL].encode())
    assert crl.get_revoked_certificate_by_serial_number(gone.serial_number) is not None
    kept = x509.load_pem_x509_certificate(after["libvirt_node1_certificate"].encode())
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    ca = x509.load_pem_x509_certificate(after["libvirt_ca_certificate"].encode())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    # Deploy keeps the list as it is.
    assert (
        secrets.ensure_node_certificates(path, nodes[:1])[secrets.NODES_CRL]
        == after[secrets.NODES_CRL]
    )


def test_renewal_issues_every_certificate_of_dietstack_anew_and_keeps_the_cas(
    tmp_path: object,
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "secrets.yaml"
    node = Node("node1", "192.168.1.20", CONTROL_ROLES)
    before = a_clouds_secrets(tmp_path)
    secrets.renew_certificates(path, [node])
    after = secrets.ensure_public_tls(path, NAMES)
    for name in ("tls_server_certificate", "tls_services_certificate", "libvirt_node1_certificate"):
        assert after[name] != before[name], name
    for name in ("tls_ca_certificate", "libvirt_ca_certificate", "tls_trust"):
        assert after[name] == before[name], name
    # What they replace is revoked: a node is one certificate at a time.
    from cryptography import x509

    crl = x509.load_pem_x509_crl(after[secrets.NODES_CRL].encode())
    for name in ("libvirt_node1_certificate", "tls_services_certificate"):
        old = x509.load_pem_x509_certificate(before[name].encode()).serial_number
        new = x509.load_pem_x509_certificate(after[name].encode()).serial_number
        assert crl.get_revoked_certificate_by_serial_number(old) is not None, name
        assert crl.get_revoked_certificate_by_serial_number(new) is None, name
    # A certificate of the user's is not DietStack's to renew.
    ca_key, ca = publictls.public_ca()
    key, cert = publictls.server_certificate(ca_key, ca, NAMES)
    theirs = publictls.UserCertificate(key, cert, ca)
    secrets.ensure_public_tls(path, NAMES, theirs)
    secrets.renew_certificates(path, [node])
    assert secrets.ensure_public_tls(path, NAMES, theirs)["tls_server_certificate"] == cert

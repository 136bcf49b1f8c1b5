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

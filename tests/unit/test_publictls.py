"""The cloud's own public CA and server certificate, and the checks of a user's."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dietstack.engine import publictls
from dietstack.engine.publictls import Names

NAMES = Names.of(["192.168.1.20", "Cloud.lan", "node1", "192.168.1.20"])


def test_names_are_split_into_host_names_and_addresses() -> None:
    assert NAMES == Names(("cloud.lan", "node1"), ("192.168.1.20",))


def test_the_server_certificate_covers_every_name_and_verifies_against_the_ca(
    tmp_path: Path,
) -> None:
    ca_key, ca_cert = publictls.public_ca()
    key, cert = publictls.server_certificate(ca_key, ca_cert, NAMES)
    loaded = x509.load_pem_x509_certificate(cert.encode())
    assert publictls.missing_names(loaded, NAMES) == []
    assert isinstance(loaded.public_key(), ec.EllipticCurvePublicKey)
    days = (loaded.not_valid_after_utc - loaded.not_valid_before_utc).days
    assert 364 <= days <= 366
    assert publictls.server_certificate_fits(cert, ca_cert, NAMES)
    # Another name, or another CA, makes it reissued.
    assert not publictls.server_certificate_fits(cert, ca_cert, Names.of(["other.lan"]))
    assert not publictls.server_certificate_fits(cert, publictls.public_ca()[1], NAMES)
    # Python's own TLS stack takes the pair and trusts the chain.
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    (tmp_path / "ca.pem").write_text(ca_cert)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client = strict_client(tmp_path / "ca.pem")
    assert client.get_ca_certs()[0]["subject"] == ((("commonName", publictls.CA_NAME),),)
    # A real handshake, with Python's strict default verification, by address and name.
    handshake(server, client, "192.168.1.20")
    handshake(server, client, "cloud.lan")
    assert publictls.check_user_certificate(cert, key, NAMES, ca_cert) == ([], [])


def strict_client(ca: Path) -> ssl.SSLContext:
    """A client context that verifies as Python 3.13's default does (X509 strict),
    whatever Python runs the tests."""
    client = ssl.create_default_context(cafile=ca)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    return client


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> None:
    """A TLS handshake between the two contexts in memory; raises when it fails."""
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    serving = server.wrap_bio(pipes[0], pipes[1], server_side=True)
    calling = client.wrap_bio(pipes[2], pipes[3], server_hostname=name)
    done = {"server": False, "client": False}
    for _ in range(10):
        for side, end in (("client", calling), ("server", serving)):
            if not done[side]:
                try:
                    end.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        pipes[0].write(pipes[3].read())
        pipes[2].write(pipes[1].read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_a_services_certificate_of_the_nodes_ca_passes_strict_verification(
    tmp_path: Path,
) -> None:
    from dietstack.engine import keys
    from dietstack.model import SERVICE_ORGANIZATION

    ca_key, ca = keys.certificate_authority("nodes CA")
    key, cert = keys.node_certificate(ca_key, ca, "node1", "192.168.1.20", SERVICE_ORGANIZATION)
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    (tmp_path / "ca.pem").write_text(ca)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    handshake(server, strict_client(tmp_path / "ca.pem"), "192.168.1.20")


def test_a_fingerprint_reads_as_browsers_show_it() -> None:
    _, ca_cert = publictls.public_ca()
    shown = publictls.fingerprint(ca_cert)
    assert len(shown) == 95 and shown.count(":") == 31 and shown == shown.upper()


def _signed(
    ca_key_pem: str, ca_cert_pem: str, names: list[str], days: int, starts_in: int = 0
) -> str:
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=starts_in)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_users_certificate_is_refused_naming_every_problem() -> None:
    ca_key, ca_cert = publictls.public_ca()
    key, _ = publictls.server_certificate(ca_key, ca_cert, NAMES)
    expired = _signed(ca_key, ca_cert, ["cloud.lan"], days=-2)
    problems, _ = publictls.check_user_certificate(expired, key, NAMES, publictls.public_ca()[1])
    text = "\n".join(problems)
    assert "not the key of tls_certificate" in text
    assert "does not cover node1, 192.168.1.20" in text
    assert "expired on" in text
    assert "not signed by a trusted CA" in text
    assert publictls.check_user_certificate("junk", "junk", NAMES, "")[0] == [
        "tls_certificate holds no PEM certificate"
    ]


def test_a_wildcard_covers_one_label_and_a_certificate_close_to_its_end_warns() -> None:
    ca_key, ca_cert = publictls.public_ca()
    cert = _signed(ca_key, ca_cert, ["*.lan"], days=10)
    leaf = x509.load_pem_x509_certificate(cert.encode())
    assert publictls.missing_names(leaf, Names.of(["cloud.lan", "a.b.lan"])) == ["a.b.lan"]
    later = _signed(ca_key, ca_cert, ["cloud.lan"], days=400, starts_in=10)
    problems, _ = publictls.check_user_certificate(later, "", Names.of(["cloud.lan"]), "")
    assert any("not valid before" in p for p in problems)
    soon_problems, warnings = publictls.check_user_certificate(
        cert, "", Names.of(["cloud.lan"]), ca_cert
    )
    assert warnings and "expires on" in warnings[0]
    assert not any("trusted CA" in p for p in soon_problems)


def test_deploy_keeps_the_ca_and_reissues_the_server_certificate_for_new_names(
    tmp_path: Path,
) -> None:
    from dietstack.engine import secrets

    path = tmp_path / "secrets.yaml"
    first = secrets.ensure_public_tls(path, NAMES)
    again = secrets.ensure_public_tls(path, NAMES)
    assert again == first
    renamed = secrets.ensure_public_tls(path, Names.of([*NAMES.dns, "cloud.example.org"]))
    assert renamed["tls_ca_certificate"] == first["tls_ca_certificate"]
    assert renamed["tls_server_certificate"] != first["tls_server_certificate"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # The cloud's clients trust its own CA.
    assert renamed["tls_trust"] == renamed["tls_ca_certificate"]


def test_a_users_certificate_is_served_and_its_ca_trusted_until_it_is_named_no_more(
    tmp_path: Path,
) -> None:
    from dietstack.engine import secrets

    path = tmp_path / "secrets.yaml"
    own = secrets.ensure_public_tls(path, NAMES)
    their_ca_key, their_ca = publictls.public_ca()
    key, cert = publictls.server_certificate(their_ca_key, their_ca, NAMES)
    theirs = publictls.UserCertificate(key=key, certificate=cert, trust=their_ca)
    served = secrets.ensure_public_tls(path, NAMES, theirs)
    assert (served["tls_server_key"], served["tls_server_certificate"]) == (key, cert)
    assert served["tls_trust"] == their_ca
    # DietStack's CA is kept, for the day the user's certificate is named no more.
    assert served["tls_ca_certificate"] == own["tls_ca_certificate"]
    back = secrets.ensure_public_tls(path, NAMES)
    assert back["tls_trust"] == own["tls_ca_certificate"]
    assert back["tls_server_certificate"] != cert
    issued = x509.load_pem_x509_certificate(back["tls_server_certificate"].encode())
    ca = x509.load_pem_x509_certificate(own["tls_ca_certificate"].encode())
    issued.verify_directly_issued_by(ca)


def test_deploy_refuses_a_users_certificate_that_does_not_fit_before_changing_anything(
    tmp_path: Path,
) -> None:
    from dietstack.engine import preflight
    from dietstack.render import Env

    ca_key, ca_cert = publictls.public_ca()
    key, cert = publictls.server_certificate(ca_key, ca_cert, Names.of(["cloud.lan"]))
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    (tmp_path / "ca.pem").write_text(ca_cert)
    settings = {
        "management_ip": "192.168.1.20",
        "node_name": "node1",
        "dashboard_names": ["cloud.lan"],
        "tls_certificate": str(tmp_path / "cert.pem"),
        "tls_private_key": str(tmp_path / "key.pem"),
        "tls_ca_certificate": str(tmp_path / "ca.pem"),
        "nodes": [{"name": "node1", "management_ip": "192.168.1.20", "roles": ["control"]}],
    }
    (problem,) = preflight.tls_problems(Env(settings, {}))
    # The management address is what the catalog names; the host's bare name is not
    # asked of a certificate of the user's.
    assert "does not cover 192.168.1.20;" in problem
    assert preflight.tls_problems(Env({**settings, "tls_certificate": ""}, {})) == []
    key, cert = publictls.server_certificate(
        ca_key, ca_cert, Names.of(["cloud.lan", "192.168.1.20"])
    )
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    assert preflight.tls_problems(Env(settings, {})) == []

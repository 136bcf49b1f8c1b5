"""The cloud's public TLS: what the APIs, the dashboard and the consoles present.

By default DietStack is its own certificate authority: a CA of the cloud's own
(ten years) signs one server certificate (one year) whose names are every name and
address a user reaches the cloud by. Its key is ECDSA P-256: each API call is a
new TLS handshake, and an ECDSA signature costs a fraction of an RSA one.

A user who has a certificate (their own CA's, or Let's Encrypt's) names its files
in the settings instead; `check_user_certificate` says everything that is wrong
with it before anything changes.

The public CA is not the nodes' CA (keys.py): the public key sits in every API
container, and must never pass for a node.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dietstack.engine import keys

CA_NAME = "DietStack cloud CA"
CA_DAYS = 10 * 365
SERVER_DAYS = 365
#: A certificate this close to its end is renewed (or, the user's, warned about).
RENEW_DAYS = 30


@dataclass(frozen=True)
class Names:
    """What a user reaches the cloud by: host names and IP addresses."""

    dns: tuple[str, ...]
    addresses: tuple[str, ...]

    @classmethod
    def of(cls, names: Iterable[str]) -> Names:
        dns, addresses = [], []
        for name in dict.fromkeys(filter(None, names)):
            try:
                addresses.append(str(ipaddress.ip_address(name)))
            except ValueError:
                dns.append(name.lower())
        return cls(tuple(dns), tuple(addresses))


@dataclass(frozen=True)
class UserCertificate:
    """A certificate of the user's, as read from the files the settings name: served
    instead of DietStack's own, with the CA (or bundle) that verifies it."""

    key: str
    certificate: str
    trust: str


def public_ca() -> tuple[str, str]:
    """(key, certificate) of the cloud's own public CA, PEM."""
    return keys.certificate_authority(CA_NAME, CA_DAYS)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def server_certificate(ca_key_pem: str, ca_cert_pem: str, names: Names) -> tuple[str, str]:
    """(key, certificate) for the APIs, the dashboard and the consoles."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    alternative: list[x509.GeneralName] = [x509.DNSName(name) for name in names.dns]
    alternative += [x509.IPAddress(ipaddress.ip_address(a)) for a in names.addresses]
    common = (names.dns or names.addresses)[0]
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(keys.authority_key_id(ca_cert), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem_key, cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(cert_pem: str) -> str:
    """SHA-256 fingerprint as browsers show it: AB:CD:..."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def missing_names(cert: x509.Certificate, names: Names) -> list[str]:
    """The names and addresses the certificate does not cover (wildcards count for
    one label, as browsers take them)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [*names.dns, *names.addresses]
    dns = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    addresses = {str(address) for address in san.get_values_for_type(x509.IPAddress)}

    def covered(name: str) -> bool:
        head, _, rest = name.partition(".")
        return name in dns or (bool(rest) and f"*.{rest}" in dns and bool(head))

    return [n for n in names.dns if not covered(n)] + [
        a for a in names.addresses if a not in addresses
    ]


def server_certificate_fits(cert_pem: str, ca_cert_pem: str, names: Names) -> bool:
    """Whether DietStack's own server certificate can stay: issued by this CA, for
    every name, and not close to its end."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem.encode()))
        # Strict clients (Python's default) need the CA's key named.
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    left = cert.not_valid_after_utc - _now()
    return not missing_names(cert, names) and left > datetime.timedelta(days=RENEW_DAYS)


def _chain(text: str, what: str, problems: list[str]) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        problems.append(f"{what} holds no PEM certificate")
        return []


def _key_matches(key_pem: str, cert: x509.Certificate) -> bool | None:
    """Whether the key is the certificate's; None when it is no readable key."""
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return key.public_key().public_bytes(encoding, public) == cert.public_key().public_bytes(
        encoding, public
    )


def _verifies(chain: list[x509.Certificate], anchors: list[x509.Certificate]) -> bool:
    """Whether the chain (leaf first, then intermediates) ends at one of the anchors."""
    candidates = chain[1:] + anchors
    current = chain[0]
    for _ in range(len(candidates) + 1):
        if any(current == anchor for anchor in anchors):
            return True
        issuer = next(
            (c for c in candidates if c.subject == current.issuer and _signed_by(current, c)),
            None,
        )
        if issuer is None:
            return False
        if issuer in anchors:
            return True
        current = issuer
    return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_user_certificate(
    cert_text: str, key_text: str, names: Names, trusted_text: str
) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a certificate the user named in the settings: its key,
    its names, its dates and its chain up to a CA in `trusted_text` (the user's CA
    file, or the host's bundle). Every problem is listed, not only the first."""
    problems: list[str] = []
    warnings: list[str] = []
    chain = _chain(cert_text, "tls_certificate", problems)
    if not chain:
        return problems, warnings
    leaf = chain[0]
    matches = _key_matches(key_text, leaf)
    if matches is None:
        problems.append("tls_private_key holds no readable unencrypted PEM private key")
    elif not matches:
        problems.append("tls_private_key is not the key of tls_certificate")
    missing = missing_names(leaf, names)
    if missing:
        problems.append(
            f"tls_certificate does not cover {', '.join(missing)}; the cloud is reached by "
            "these names, so get a certificate that names them all (or change "
            "dashboard_names)"
        )
    now = _now()
    if leaf.not_valid_before_utc > now:
        problems.append(f"tls_certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}")
    if leaf.not_valid_after_utc <= now:
        problems.append(f"tls_certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    elif leaf.not_valid_after_utc - now < datetime.timedelta(days=RENEW_DAYS):
        warnings.append(f"tls_certificate expires on {leaf.not_valid_after_utc:%Y-%m-%d}")
    anchors = _chain(trusted_text, "the trusted CA file", problems) if trusted_text else []
    if anchors and not _verifies(chain, anchors):
        problems.append(
            "tls_certificate is not signed by a trusted CA: put its intermediate "
            "certificates after it in the same file, and name its CA in tls_ca_certificate"
        )
    return problems, warnings

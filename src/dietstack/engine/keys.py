"""Key material DietStack generates: SSH key pairs and the nodes' TLS certificates.

Everything is made on the control host and stored with the other secrets; the
certificate authority's key never leaves it. Each node gets the certificate of
its own management address, which libvirt (live migration) and QEMU (the
migration and disk streams) present to, and require from, the other nodes.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dietstack.model import NODE_ORGANIZATION

#: The nodes' CA lasts ten years; node and service certificates one, reissued by
#: `dietstack certs renew` (or a deploy) in their last RENEW_DAYS, which `status`
#: warns of.
CA_DAYS = 10 * 365
NODE_DAYS = 365
RENEW_DAYS = 30
# RSA: libvirt requires the key-encipherment usage on its certificates.
RSA_BITS = 3072


def ssh_keypair(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH format, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, f"{public.decode()} {comment}"


def _pem_key(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def certificate_authority(name: str, days: int = CA_DAYS) -> tuple[str, str]:
    """(CA key, CA certificate), both PEM, valid for `days`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM).decode()


def node_certificate(
    ca_key_pem: str, ca_cert_pem: str, name: str, ip: str, organization: str = NODE_ORGANIZATION
) -> tuple[str, str]:
    """(key, certificate) of one node, for both ends of a TLS connection: the
    node serves migrations and starts them. A service of the control node (e.g.
    RabbitMQ) gets one of SERVICE_ORGANIZATION: it never passes for a node."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    return signed_certificate(ca_key_pem, ca_cert_pem, subject, name, ip)


def signed_certificate(
    ca_key_pem: str, ca_cert_pem: str, subject: x509.Name, name: str, ip: str
) -> tuple[str, str]:
    """(key, certificate) for `subject`, signed by the CA, naming `name` and `ip`."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=NODE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(ip))]
            ),
            critical=False,
        )
        .add_extension(authority_key_id(ca_cert), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM).decode()


def revocation_list(ca_key_pem: str, ca_cert_pem: str, serials: list[int]) -> str:
    """The CA's list of certificates it no longer vouches for (a removed node's), PEM.
    It is valid as long as the CA: libvirt and QEMU refuse a certificate listed."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(max(ca_cert.not_valid_after_utc, now + datetime.timedelta(days=1)))
        .add_extension(authority_key_id(ca_cert), critical=False)
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def serial_of(cert_pem: str) -> int | None:
    try:
        return x509.load_pem_x509_certificate(cert_pem.encode()).serial_number
    except ValueError:
        return None


def authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Names the CA's key in a certificate it signs: Python's strict verification
    (the default since 3.13) refuses a certificate without it."""
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]


def certificate_fits(
    cert_pem: str, ca_cert_pem: str, name: str, ip: str, organization: str = NODE_ORGANIZATION
) -> bool:
    """Whether a node's certificate is still the right one: issued by this CA for
    this name and address, and not close to running out."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
        cert.verify_directly_issued_by(ca_cert)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        # Python's strict verification (the console proxy's of QEMU) needs the CA's key named.
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    addresses = [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    left = cert.not_valid_after_utc - _now()
    organisations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (
        [attribute.value for attribute in organisations] == [organization]
        and ip in addresses
        and name in names.get_values_for_type(x509.DNSName)
        and left > datetime.timedelta(days=RENEW_DAYS)
    )

"""A certificate the cloud's CA signs for something that is not a node (as a future
service certificate of the same CA would be), to show what libvirt admits."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from dietstack.engine import keys


def not_a_nodes(ca_key_pem: str, ca_cert_pem: str, name: str, ip: str) -> tuple[str, str]:
    """(key, certificate), PEM: signed by the CA for `name` and `ip`, without the
    node mark."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return keys.signed_certificate(ca_key_pem, ca_cert_pem, subject, name, ip)

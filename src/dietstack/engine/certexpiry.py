"""When the cloud's certificates end, read from its secrets: what `status` warns of.

DietStack's own certificates are renewed by `dietstack certs renew` (and by a
deploy once they are within RENEW_DAYS of their end); a certificate the user
named in the settings is theirs to renew.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509

from dietstack.model import PUBLIC_TRUST, SERVICES_TLS

#: Warn this many days before a certificate ends.
WARN_DAYS = 30

#: The certificates of the cloud as a whole, by secret, and what each is.
SHARED = {
    "tls_ca_certificate": "the cloud's public CA",
    "tls_server_certificate": "the certificate of the APIs, the dashboard and the consoles",
    "libvirt_ca_certificate": "the nodes' CA",
    SERVICES_TLS[1]: "the certificate of RabbitMQ, OVN's databases and the console proxy",
}


@dataclass(frozen=True)
class Ending:
    secret: str
    what: str
    ends: datetime.datetime

    def warning(self, now: datetime.datetime, users: bool) -> str:
        left = (self.ends - now).days
        when = (
            f"ended on {self.ends:%Y-%m-%d}"
            if left < 0
            else (f"ends on {self.ends:%Y-%m-%d} (in {left} days)")
        )
        if users:
            how = "renew it, then run `dietstack deploy`"
        elif self.secret.endswith("ca_certificate"):
            how = "a new CA means every client trusts it anew: plan the change"
        else:
            how = "run `dietstack certs renew`"
        return f"{self.what} {when}: {how}"


def certificates(values: Mapping[str, str]) -> dict[str, str]:
    """Every certificate in the secrets, by secret name, and what it is."""
    found = {name: what for name, what in SHARED.items() if values.get(name)}
    for name in values:
        if name.startswith("libvirt_") and name.endswith("_certificate") and name not in SHARED:
            node = name.removeprefix("libvirt_").removesuffix("_certificate")
            found[name] = f"node {node}'s certificate"
    return found


def end_of(pem: str) -> datetime.datetime | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    except ValueError:
        return None


def warnings(
    values: Mapping[str, str], now: datetime.datetime | None = None, days: int = WARN_DAYS
) -> list[str]:
    """A line for each certificate that ends within `days` (or has ended)."""
    now = now or datetime.datetime.now(datetime.UTC)
    users = bool(values.get(PUBLIC_TRUST)) and values.get(PUBLIC_TRUST) != values.get(
        "tls_ca_certificate"
    )
    lines = []
    for name, what in certificates(values).items():
        ends = end_of(values[name])
        if ends is None or ends - now > datetime.timedelta(days=days):
            continue
        own = users and name == "tls_server_certificate"
        shown = "your certificate (tls_certificate)" if own else what
        lines.append(Ending(name, shown, ends).warning(now, own))
    return lines

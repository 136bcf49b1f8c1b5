"""What TLS costs: a handshake with the cloud's ECDSA key against an RSA one, and the
time of one API call over HTTPS on a running cloud (every call is a new connection:
the APIs answer `Connection: close`).

    PYTHONPATH=benchmarks:. python benchmarks/tls.py [--config FILE] [--rounds 200] \\
        [--output benchmarks/results/tls.md]

The handshakes run in this process over a socket pair, server and client each in a
thread, with Python's ssl (OpenSSL), as the services' clients do.
"""

from __future__ import annotations

import argparse
import datetime
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dietstack.apis import cloudapi
from dietstack.engine import keys, publictls
from dietstack.engine.publictls import Names
from images import machine


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pairs(directory: Path) -> dict[str, tuple[Path, Path, Path]]:
    """(certificate, key, CA) files of an ECDSA P-256 and an RSA-3072 server."""
    names = Names.of(["127.0.0.1"])
    ca_key, ca = publictls.public_ca()
    ecdsa_key, ecdsa_cert = publictls.server_certificate(ca_key, ca, names)
    rsa_key, rsa_cert = keys.node_certificate(ca_key, ca, "bench", "127.0.0.1")
    made = {}
    for kind, (key, cert) in {
        "ECDSA P-256": (ecdsa_key, ecdsa_cert),
        "RSA-3072": (rsa_key, rsa_cert),
    }.items():
        slug = kind.split()[0].lower()
        (directory / f"{slug}.key").write_text(key)
        (directory / f"{slug}.crt").write_text(cert)
        (directory / "ca.pem").write_text(ca)
        made[kind] = (directory / f"{slug}.crt", directory / f"{slug}.key", directory / "ca.pem")
    return made


def _serve_once(server: ssl.SSLContext, sock: socket.socket) -> None:
    server.wrap_socket(sock, server_side=True).close()


def handshake_ms(cert: Path, key: Path, ca: Path, rounds: int) -> float:
    """Median milliseconds of one full handshake (TLS 1.3, certificate verified)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=ca)
    times = []
    for _ in range(rounds):
        ours, theirs = socket.socketpair()
        serving = threading.Thread(target=_serve_once, args=(server, theirs))
        started = time.perf_counter()
        serving.start()
        with client.wrap_socket(ours, server_hostname="127.0.0.1"):
            pass
        serving.join()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def api_call_ms(url: str, rounds: int) -> float:
    """Median milliseconds of a GET on a new connection, verified with the cloud's CA."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        requests.get(url, verify=str(cloudapi.CA_FILE), timeout=30).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    lines = [f"# TLS costs ({datetime.date.today()}, {machine()})", ""]
    lines += ["| server key | median full handshake |", "|---|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        for kind, (cert, key, ca) in pairs(Path(scratch)).items():
            lines.append(f"| {kind} | {handshake_ms(cert, key, ca, args.rounds):.2f} ms |")
    if args.config:
        from dietstack.app import cloud as clouds

        env = clouds.deployed_env(args.config)
        lines += ["", "| call (new connection each) | median |", "|---|---|"]
        for name, url in (
            ("Keystone GET /v3", env.url(5000, "/v3")),
            ("Nova GET / (versions)", env.url(8774, "/")),
        ):
            lines.append(f"| {name} | {api_call_ms(url, args.rounds):.1f} ms |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()

"""Credentials of a deployed federation: a private certificate authority and the
SuperLink's TLS certificate signed by it, and one EC key pair per SuperNode for
Flower's node authentication (``flwr supernode register`` takes the public key).

Generated with ``cryptography`` (a Flower dependency), so no ``openssl`` is
needed: ``relatlas deploy credentials DIR --supernodes 3``.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, SERVER_CERT, SERVER_KEY = "ca.crt", "server.pem", "server.key"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1", "superlink")  # "superlink": the compose service name
VALID_DAYS = 365


def supernode_key_paths(directory: Path, index: int) -> tuple[Path, Path]:
    """Private and public key files of SuperNode ``index``."""
    return directory / f"supernode-{index}", directory / f"supernode-{index}.pub"


def _name(common_name: str) -> x509.Name:
    organization = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "relatlas")
    return x509.Name([organization, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    path.chmod(0o600)


def generate_tls(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> None:
    """A CA (``ca.crt``) and a server certificate for ``hosts`` (``server.pem``, ``server.key``)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("relatlas federation CA"))
        .issuer_name(_name("relatlas federation CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    (directory / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / SERVER_CERT).write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / SERVER_KEY, server_key, serialization.PrivateFormat.TraditionalOpenSSL)


def generate_supernode_keys(directory: Path, count: int) -> None:
    """One P-384 key pair per SuperNode, in the OpenSSH format Flower reads."""
    for index in range(count):
        private, public = supernode_key_paths(directory, index)
        key = ec.generate_private_key(ec.SECP384R1())
        _write_key(private, key, serialization.PrivateFormat.OpenSSH)
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))


def generate_credentials(directory: Path, supernodes: int, hosts: Sequence[str] = DEFAULT_HOSTS) -> Path:
    """Everything a TLS federation with ``supernodes`` authenticated nodes needs, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    generate_tls(directory, hosts)
    generate_supernode_keys(directory, supernodes)
    return directory

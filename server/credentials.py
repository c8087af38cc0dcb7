"""Credentials of a deployed federation: a private certificate authority and the
SuperLink's TLS certificate signed by it, and one EC key pair per SuperNode for
Flower's node authentication (``flwr supernode register`` takes the public key).

Generated with ``cryptography`` (a Flower dependency), so no ``openssl`` is
needed: ``relatlas deploy credentials DIR --supernodes 3``. Private keys and the
SuperExec shared secret are created 0600; existing credentials are replaced
only when asked (``--force``), since SuperNodes registered with the old keys
would then be locked out.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relatlas.benchmarks.datasets import first_few

CA_CERT, SERVER_CERT, SERVER_KEY = "ca.crt", "server.pem", "server.key"
SUPEREXEC_SECRET = "superexec.secret"  # shared by the SuperLink, the SuperNodes and their SuperExecs
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1", "superlink")  # "superlink": the compose service name
VALID_DAYS = 365
MAX_SUPERNODES = 256  # one machine's processes and ports; more nodes are deployed across machines (docs)


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


class CredentialsError(RuntimeError):
    """Credentials that would be overwritten, or have expired; one line."""


def check_supernode_count(count: int) -> None:
    """Refuse a SuperNode count that is not 1..``MAX_SUPERNODES``."""
    if not 1 <= count <= MAX_SUPERNODES:
        raise CredentialsError(f"supernodes must be 1 to {MAX_SUPERNODES}; got {count}")


def credential_files(directory: Path, supernodes: int) -> list[Path]:
    """Every file ``generate_credentials`` writes for ``supernodes`` SuperNodes."""
    keys = [path for index in range(supernodes) for path in supernode_key_paths(directory, index)]
    return [directory / name for name in (CA_CERT, SERVER_CERT, SERVER_KEY, SUPEREXEC_SECRET)] + keys


def existing_credentials(directory: Path) -> list[Path]:
    """The credential files already in ``directory``: the CA, the server's certificate
    and key, the shared secret, and every SuperNode's key pair, whatever its index."""
    named = [path for path in credential_files(directory, 0) if os.path.lexists(path)]
    return sorted(named + list(directory.glob("supernode-*")))


def _write_private(path: Path, data: bytes) -> None:
    """``data`` in a file readable by its owner only, from the moment it exists."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> None:
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))


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


def generate_credentials(directory: Path, supernodes: int, hosts: Sequence[str] = DEFAULT_HOSTS, *, force: bool = False) -> Path:
    """Everything a TLS federation with ``supernodes`` authenticated nodes needs, in
    ``directory``; refused where any credential file exists (a SuperNode's key may
    be registered even when the CA is gone), unless ``force``."""
    check_supernode_count(supernodes)
    existing = existing_credentials(directory)
    if existing and not force:
        raise CredentialsError(
            f"credentials exist in {directory} ({first_few([path.name for path in existing])}); --force replaces them "
            "(every SuperNode must then be registered again)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    generate_tls(directory, hosts)
    generate_supernode_keys(directory, supernodes)
    _write_private(directory / SUPEREXEC_SECRET, secrets.token_bytes(32))
    return directory


def check_not_expired(directory: Path, now: datetime.datetime | None = None) -> None:
    """Refuse a CA or server certificate outside its validity period."""
    now = now or datetime.datetime.now(datetime.UTC)
    for name in (CA_CERT, SERVER_CERT):
        certificate = x509.load_pem_x509_certificate((directory / name).read_bytes())
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise CredentialsError(
                f"{directory / name} is valid from {certificate.not_valid_before_utc:%Y-%m-%d} to "
                f"{certificate.not_valid_after_utc:%Y-%m-%d}, not now: `relatlas deploy credentials --force` makes new ones"
            )

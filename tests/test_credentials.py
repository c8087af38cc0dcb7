import datetime
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.cli.supernode.register import try_load_public_key

from relatlas.server.credentials import (
    CA_CERT,
    MAX_SUPERNODES,
    SERVER_CERT,
    SUPEREXEC_SECRET,
    VALID_DAYS,
    CredentialsError,
    check_not_expired,
    generate_credentials,
    supernode_key_paths,
)


def test_the_server_certificate_is_signed_by_the_ca_for_every_host(tmp_path):
    generate_credentials(tmp_path, 2, hosts=("localhost", "127.0.0.1", "superlink"))
    ca = x509.load_pem_x509_certificate((tmp_path / CA_CERT).read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / SERVER_CERT).read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "superlink"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_supernode_keys_load_as_flower_reads_them(tmp_path):
    generate_credentials(tmp_path, 2)
    private, public = supernode_key_paths(tmp_path, 1)
    assert load_ssh_private_key(private.read_bytes(), password=None).curve.name == "secp384r1"
    assert try_load_public_key(public)  # what `flwr supernode register` accepts
    assert private.stat().st_mode & 0o077 == 0  # private keys readable by their owner only


def test_existing_credentials_are_replaced_only_with_force_and_private_files_are_never_readable(tmp_path, monkeypatch):
    created = []
    real_open = os.open
    monkeypatch.setattr(
        os, "open", lambda path, flags, mode=0o777: created.append((Path(path).name, mode)) or real_open(path, flags, mode)
    )
    generate_credentials(tmp_path, 2)
    assert {name for name, mode in created if mode == 0o600} == {"server.key", "supernode-0", "supernode-1", SUPEREXEC_SECRET}
    first_ca = (tmp_path / CA_CERT).read_bytes()
    with pytest.raises(CredentialsError, match="credentials exist in .*; --force replaces them"):
        generate_credentials(tmp_path, 2)
    assert (tmp_path / CA_CERT).read_bytes() == first_ca
    generate_credentials(tmp_path, 2, force=True)
    assert (tmp_path / CA_CERT).read_bytes() != first_ca
    assert all(
        stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600 for name in ("server.key", "supernode-1", SUPEREXEC_SECRET)
    )


def test_expired_certificates_are_refused(tmp_path):
    generate_credentials(tmp_path, 1)
    check_not_expired(tmp_path)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=VALID_DAYS + 1)
    with pytest.raises(CredentialsError, match="ca.crt is valid from .* not now: `relatlas deploy credentials --force`"):
        check_not_expired(tmp_path, now=later)


def test_no_key_is_replaced_without_force_even_with_the_ca_gone(tmp_path):
    generate_credentials(tmp_path, 2)
    (tmp_path / CA_CERT).unlink()
    keys = {path: path.read_bytes() for path in tmp_path.glob("supernode-*")}
    listed = r"\(server.key, server.pem, superexec.secret, supernode-0, supernode-0.pub and 2 more\)"
    with pytest.raises(CredentialsError, match=f"credentials exist in .* {listed}; --force replaces them"):
        generate_credentials(tmp_path, 2)
    assert {path: path.read_bytes() for path in tmp_path.glob("supernode-*")} == keys and len(keys) == 4
    assert not (tmp_path / CA_CERT).exists()


@pytest.mark.parametrize("count", [-1, 0, MAX_SUPERNODES + 1])
def test_a_supernode_count_outside_one_to_the_maximum_is_refused(tmp_path, count):
    with pytest.raises(CredentialsError, match=f"supernodes must be 1 to {MAX_SUPERNODES}; got {count}"):
        generate_credentials(tmp_path / "new", count)
    assert not (tmp_path / "new").exists()

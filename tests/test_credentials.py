from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.cli.supernode.register import try_load_public_key

from server.credentials import CA_CERT, SERVER_CERT, generate_credentials, supernode_key_paths


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

"""The self-signed certificate of ``qrlogin testserver --tls``, checked by a real TLS handshake in memory."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from qrlogin.cli._selfsigned import VALIDITY, self_signed
from qrlogin.cli.testserver import _certificate_names

NOW = datetime.datetime.now(datetime.UTC)


def handshake(tmp_path: Path, names: list[str], server_hostname: str) -> None:
    """A TLS handshake through memory BIOs: a server presenting the certificate, a strict client trusting only it."""
    made = self_signed(names, now=NOW)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(made.certificate_pem)
    key.write_bytes(made.key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1", "matrix.qrlogin.test"])
def test_a_strict_client_trusting_the_file_accepts_every_name(tmp_path: Path, hostname: str) -> None:
    handshake(tmp_path, ["matrix.qrlogin.test", "localhost", "127.0.0.1", "[::1]"], hostname)


def test_a_name_not_in_the_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        handshake(tmp_path, ["localhost"], "elsewhere.test")


def test_the_certificate_is_its_own_p256_issuer_for_thirty_days() -> None:
    made = self_signed(["a.test", "A.test", "10.0.0.1"], now=NOW)
    cert = x509.load_pem_x509_certificate(made.certificate_pem)
    assert cert.issuer == cert.subject
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == VALIDITY + datetime.timedelta(hours=1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test"]  # names are case-insensitive: one entry
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert "PRIVATE KEY" not in repr(made)
    with pytest.raises(ValueError, match="at least one name"):
        self_signed(["", ""], now=NOW)


def test_the_names_cover_the_host_the_public_url_and_loopback() -> None:
    names = _certificate_names("127.0.0.1", "https://matrix.example.org:8448", "example.org")
    assert names[:4] == ["127.0.0.1", "matrix.example.org", "example.org", "localhost"]
    assert "::1" in names
    assert "0.0.0.0" not in _certificate_names("0.0.0.0", "https://h.example", "h.example")  # noqa: S104

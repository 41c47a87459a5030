"""A self-signed TLS certificate for a server on this machine, made at start with ``cryptography``.

``qrlogin testserver --tls`` serves https with a certificate nobody issued: a client trusts it by loading the
certificate file the command writes (``httpx.Client(verify=PATH)``, ``NODE_EXTRA_CA_CERTS=PATH``, a browser's
certificate import). The certificate is its own issuer and trust anchor. It is built to pass strict verification
(Python 3.13's default ``VERIFY_X509_STRICT``, RFC 5280): ECDSA P-256 with SHA-256, a random 159-bit serial,
``basicConstraints`` critical with ``cA`` true (a trust anchor that signs itself), subject and authority key
identifiers, ``keyUsage`` for signing certificates and for the TLS handshake, ``extendedKeyUsage`` serverAuth, and
every name a client may use in ``subjectAltName`` (host names as DNS names, addresses as IP addresses). It is valid
from an hour ago (clock skew) for 30 days: a test server is not meant to outlive that.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["SelfSigned", "self_signed"]

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class SelfSigned:
    certificate_pem: bytes
    key_pem: bytes = field(repr=False)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name)


def self_signed(names: Iterable[str], *, now: datetime.datetime) -> SelfSigned:
    """A certificate for ``names`` (host names or IP addresses, deduplicated in order) and its private key."""
    unique = list(dict.fromkeys(name.strip("[]").lower() for name in names if name))
    if not unique:
        raise ValueError("a certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"qrlogin testserver {unique[0]}")])
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(x509.SubjectAlternativeName([_alt_name(name) for name in unique]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SelfSigned(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )

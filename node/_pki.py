"""The cluster's own certificate authority: node keys, certificates, join tokens."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._layout import write_private

CA_YEARS = 30
NODE_YEARS = 10
INVITE_TTL_S = 3600
"""A join token is valid for one hour, once."""
TOKEN_PREFIX = "smj_"  # noqa: S105 (a prefix, not a secret)


class PkiError(Exception):
    """A certificate, key or join token that cannot be used."""


@dataclass(frozen=True)
class Invite:
    """What a join token carries: where to join, whom to trust, the one-time secret."""

    cluster_id: str
    inviter: str
    ca_fingerprint: str
    secret: str
    expires: int
    inviter_fingerprint: str = ""
    """SHA-256 of the inviting node's certificate: the secret goes to that node only (any
    member holds the CA key and could present another CA-signed certificate)."""

    def encode(self) -> str:
        """The token as printed: smj_ + base64url(CBOR)."""
        raw = cbor2.dumps(
            {
                "c": self.cluster_id,
                "i": self.inviter,
                "f": self.ca_fingerprint,
                "n": self.inviter_fingerprint,
                "s": self.secret,
                "e": self.expires,
            }
        )
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Invite:
        """Parse a printed token; PkiError when it is not one."""
        token = token.strip()
        if not token.startswith(TOKEN_PREFIX) or len(token) > 600:
            raise PkiError("this is not a sterimesh join token")
        body = token[len(TOKEN_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = cbor2.loads(raw)
            invite = cls(
                cluster_id=str(data["c"]),
                inviter=str(data["i"]),
                ca_fingerprint=str(data["f"]),
                secret=str(data["s"]),
                expires=int(data["e"]),
                inviter_fingerprint=str(data.get("n", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError, cbor2.CBORDecodeError):
            raise PkiError("this join token is damaged (copy it again)") from None
        if not _HEX64.fullmatch(invite.inviter_fingerprint):
            raise PkiError("this join token is from an older version: make a new one")
        return invite

    @property
    def secret_hash(self) -> str:
        """What the inviter stores: the secret itself never rests on disk."""
        return hashlib.sha256(self.secret.encode()).hexdigest()


def new_invite(
    cluster_id: str, inviter: str, ca_fingerprint: str, now: int, inviter_fingerprint: str
) -> Invite:
    """A fresh one-time invitation valid for INVITE_TTL_S seconds."""
    return Invite(
        cluster_id,
        inviter,
        ca_fingerprint,
        secrets.token_urlsafe(24),
        now + INVITE_TTL_S,
        inviter_fingerprint,
    )


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A new P-256 private key and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _key_pem(key)


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """A private key from PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("unexpected key type")
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    """A certificate from PEM; PkiError if unreadable."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise PkiError("unreadable certificate") from None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def create_ca(cluster_id: str) -> tuple[bytes, bytes]:
    """A new cluster CA: (key PEM, certificate PEM)."""
    key, key_pem = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sterimesh cluster {cluster_id}")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def make_csr(key: ec.EllipticCurvePrivateKey, node_id: str) -> bytes:
    """A certificate request for a node id, PEM."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_node(ca_key_pem: bytes, ca_cert_pem: bytes, csr_pem: bytes, node_id: str) -> bytes:
    """Sign a node's request with the cluster CA; the certificate names the node id."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise PkiError("unreadable certificate request") from None
    if not csr.is_signature_valid:
        raise PkiError("certificate request signature is invalid")
    ca_cert = load_cert(ca_cert_pem)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * NODE_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:sterimesh:node:{node_id}")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(load_key(ca_key_pem), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def node_id_of(cert: x509.Certificate) -> str:
    """The node id a certificate names (its common name)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise PkiError("certificate names no node")
    return str(names[0].value)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when `ca` signed `cert`."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class NodePki:
    """Paths of a node's key material in its data directory (mode 0600)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        """The cluster CA certificate (every node)."""
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The cluster CA key (nodes that may invite)."""
        return self.root / "ca.key"

    @property
    def cert(self) -> Path:
        """This node's certificate."""
        return self.root / "node.pem"

    @property
    def key(self) -> Path:
        """This node's private key."""
        return self.root / "node.key"

    def write(self, path: Path, data: bytes) -> None:
        """Write a key or certificate, readable by the owner only."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, data)

    def ca_fingerprint(self) -> str:
        """The fingerprint peers and join tokens pin."""
        return fingerprint(load_cert(self.ca_cert.read_bytes()))

    def server_context(self) -> ssl.SSLContext:
        """TLS for the sync listener: our certificate; peers' certificates checked if sent."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(cafile=str(self.ca_cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # joining nodes have none yet; /sync demands one
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """TLS for dialing a peer: present our certificate, demand one of our CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(cafile=str(self.ca_cert))
        ctx.check_hostname = False  # peers are named by node id in the certificate, not by host
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

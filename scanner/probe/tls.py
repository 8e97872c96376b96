"""TLS certificates: who issued the camera's self-signed certificate, and to whom.

Camera firmware generates its HTTPS certificate from a template that often
names the maker: Hikvision DVRs "CN=www.hikvision.com, OU=DVRNVR, O=HIKVISION"
(rapid7/recog xml/x509_subjects.xml), Dahua "OU=DAHUATECH, O=DAHUA" issued by
"O=DahuaTech, CN=Product Root CA" (a Zeek ssl.log of a Dahua camera quoted in
the code index, id 33416491197) or by "Zhejiang Dahua Technology Co.,Ltd. /
Dahua Device NVR CA" (D4-project/Plum-Island#204). We fingerprint, we do not
trust: verification is off, no SNI is sent, and legacy protocol versions and
weak ciphers are allowed where this OpenSSL still can.

Observation attrs (source=Source.TLS): port, tls_version, cipher, and the
certificate's subject_cn, subject_o, subject_ou, subject_c, issuer_cn,
issuer_o, issuer_ou, issuer_c, san (space-joined DNS names and IPs),
serial_number (hex), not_before, not_after (ISO-8601 UTC), sha256 (hex of
the DER), self_signed ("true"/"false"), key ("EC secp256r1", "RSA 2048"),
signature (hash name), vendor_hint (hikvision/dahua when the names say so).
`error` when the handshake or the certificate failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from scanner.discovery.base import TLS_HANDSHAKE_PACKETS, ProbeContext
from scanner.errors import ParseError
from scanner.model import Observation, Source, iso, utcnow
from scanner.probe import BudgetExhausted, clip, close, connect, deadline_for, remaining, squash

TLS_REQUESTS = TLS_HANDSHAKE_PACKETS  # the certificate is all we ask for
MAX_CERT = 64 * 1024

_NAME_FIELDS = (
    (NameOID.COMMON_NAME, "cn"),
    (NameOID.ORGANIZATION_NAME, "o"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "ou"),
    (NameOID.COUNTRY_NAME, "c"),
)


@dataclass(frozen=True, slots=True)
class TlsSession:
    sock: socket.socket  # the wrapped socket, handshake done
    cert: bytes | None  # the peer certificate, DER
    version: str | None
    cipher: str | None


_CONTEXT: ssl.SSLContext | None = None
_CONTEXT_LOCK = threading.Lock()


def client_context() -> ssl.SSLContext:
    """No verification, no hostname check, as old a protocol as OpenSSL allows."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is not None:
            return _CONTEXT
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # fingerprinting, not trusting
        with warnings.catch_warnings(), contextlib.suppress(ValueError, OSError):
            # cameras from 2012 still speak TLS 1.0 with RSA key exchange; Python
            # deprecates the setting, which is the point of setting it here
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        with contextlib.suppress(ssl.SSLError):
            context.set_ciphers("ALL:@SECLEVEL=0")
        _CONTEXT = context
        return context


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed handshake."""
    if isinstance(exc, ssl.SSLError):
        return clip(exc.reason or type(exc).__name__, 80)
    if isinstance(exc, TimeoutError):
        return "deadline"
    return type(exc).__name__


def handshake(sock: socket.socket, deadline: float) -> TlsSession:
    """Wrap a connected socket and shake hands before the deadline (SNI not sent).

    Raises OSError (ssl.SSLError, TimeoutError) on failure; the caller closes `sock`.
    """
    left = remaining(deadline)
    if left <= 0:
        raise TimeoutError("deadline passed before the handshake")
    sock.settimeout(left)  # CPython applies it to the whole handshake, not per read
    wrapped = client_context().wrap_socket(sock, server_hostname=None)
    cert = wrapped.getpeercert(binary_form=True)
    cipher = wrapped.cipher()
    return TlsSession(
        sock=wrapped,
        cert=cert[:MAX_CERT] if cert else None,
        version=wrapped.version(),
        cipher=cipher[0] if cipher else None,
    )


def _name_value(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _name(name: x509.Name, prefix: str, out: dict[str, str]) -> None:
    for oid, short in _NAME_FIELDS:
        try:
            values = [_name_value(a.value) for a in name.get_attributes_for_oid(oid)]
        except (ValueError, TypeError):
            continue
        values = [clip(squash(v)) for v in values if v.strip()]
        if values:
            out[f"{prefix}_{short}"] = clip(" / ".join(values))


def _key(cert: x509.Certificate) -> str | None:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError):
        return None
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _sans(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except (x509.ExtensionNotFound, ValueError, TypeError):
        return None
    names: list[str] = []
    value = ext.value
    if isinstance(value, x509.SubjectAlternativeName):
        names += [str(n) for n in value.get_values_for_type(x509.DNSName)]
        names += [str(n) for n in value.get_values_for_type(x509.IPAddress)]
    return clip(" ".join(names)) if names else None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False  # same name, someone else's key: a CA named like its leaf
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True  # a key type we cannot check: the names alone decide
    return True


def _time(cert: x509.Certificate, attr: str) -> str | None:
    try:
        value: datetime = getattr(cert, attr)
    except (ValueError, TypeError, OverflowError):
        return None
    return iso(value)


def parse_certificate(der: bytes) -> dict[str, str]:
    """The identifying fields of a DER certificate; ParseError if it is not one.

    Pure. Fields that cannot be read are left out rather than failing the lot.
    """
    if not der or len(der) > MAX_CERT:
        raise ParseError("no certificate" if not der else "certificate too large")
    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject, cert.issuer
    except Exception as exc:  # the DER parser raises many types on junk
        raise ParseError(f"not a certificate: {type(exc).__name__}") from None
    out: dict[str, str] = {"sha256": hashlib.sha256(der).hexdigest()}
    _name(subject, "subject", out)
    _name(issuer, "issuer", out)
    with contextlib.suppress(ValueError, TypeError):
        out["serial_number"] = format(cert.serial_number, "x")[:128]
    for attr, key in (("not_valid_before_utc", "not_before"), ("not_valid_after_utc", "not_after")):
        when = _time(cert, attr)
        if when:
            out[key] = when
    if sans := _sans(cert):
        out["san"] = sans
    out["self_signed"] = "true" if _self_signed(cert) else "false"
    if key_text := _key(cert):
        out["key"] = key_text
    try:
        algorithm = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        algorithm = None
    if algorithm is not None:
        out["signature"] = algorithm.name
    return out


# Certificate names that betray the firmware's maker (sources in the module docstring).
_CERT_HINTS = ((re.compile(r"hikvision", re.I), "hikvision"), (re.compile(r"dahua", re.I), "dahua"))


def cert_hints(fields: dict[str, str]) -> list[str]:
    """Families named in the certificate's subject or issuer (O, OU, CN)."""
    text = " ".join(
        fields.get(f"{side}_{part}", "")
        for side in ("subject", "issuer")
        for part in ("o", "ou", "cn")
    )
    return list(dict.fromkeys(family for pattern, family in _CERT_HINTS if pattern.search(text)))


def observe(
    ip: str,
    port: int,
    der: bytes,
    *,
    version: str | None,
    cipher: str | None,
    seen_at: datetime,
) -> Observation:
    """The certificate (and session) as an Observation; pure."""
    attrs: dict[str, str] = {"port": str(port)}
    if version:
        attrs["tls_version"] = clip(version)
    if cipher:
        attrs["cipher"] = clip(cipher)
    error = None
    try:
        attrs.update(parse_certificate(der))
    except ParseError as exc:
        error = str(exc)
    if hints := cert_hints(attrs):
        attrs["vendor_hint"] = " ".join(hints)
    return Observation(source=Source.TLS, ip=ip, seen_at=seen_at, attrs=attrs, error=error)


def probe(ctx: ProbeContext, ip: str, port: int) -> Observation | None:
    """Handshake with one port and read its certificate; None if the port is closed.

    Raises BudgetExhausted when the host's packet budget is spent.
    """
    try:
        sock = connect(ctx, ip, port, requests=TLS_REQUESTS)
    except BudgetExhausted:
        raise
    except OSError:
        return None
    deadline = deadline_for(ctx)
    session: TlsSession | None = None
    try:
        session = handshake(sock, deadline)
    except (OSError, ValueError) as exc:
        return Observation(
            source=Source.TLS,
            ip=ip,
            seen_at=utcnow(),
            attrs={"port": str(port), "open": "true"},
            error=f"tls: {describe_error(exc)}",
        )
    finally:
        close(session.sock if session is not None else sock)
    if session.cert is None:
        return Observation(
            source=Source.TLS,
            ip=ip,
            seen_at=utcnow(),
            attrs={"port": str(port), "tls_version": session.version or ""},
            error="no certificate",
        )
    return observe(
        ip, port, session.cert, version=session.version, cipher=session.cipher, seen_at=utcnow()
    )

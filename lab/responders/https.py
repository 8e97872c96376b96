"""``kind = "https"``: the ``http`` kind over TLS, with a camera-style certificate.

Every ``http`` option works the same (status, reason, server, content_type,
headers, body, paths). The certificate is made when the responder starts,
from these options (all optional; EC P-256 keys, so it takes milliseconds):

  subject_cn, subject_o, subject_ou, subject_l, subject_st, subject_c
                 the subject (default CN "IP Camera")
  issuer_cn, issuer_o, issuer_ou, issuer_c
                 an issuing CA: a separate CA key signs the leaf
  self_signed    true: the leaf signs itself and the issuer options are refused
                 (default: true unless an issuer option is given)
  san            list of subjectAltNames; IP addresses become IP entries

Camera firmware ships templates such as Hikvision's
"CN=www.hikvision.com, OU=DVRNVR, O=HIKVISION, L=HangZhou, ST=ZheJiang, C=CN"
(rapid7/recog x509_subjects.xml) or a leaf for the device's IP issued by
"O=Zhejiang Dahua Technology Co.,Ltd., CN=Dahua Device NVR CA" (D4-project/
Plum-Island#204); scenarios copy them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.responders.base import OptionError, OptionType, check_type, register
from lab.responders.http import HttpResponder

HANDSHAKE_TIMEOUT = 10.0
VALID_DAYS = 3650  # camera certificates are made for the device's lifetime

_SUBJECT = {
    "subject_cn": NameOID.COMMON_NAME,
    "subject_o": NameOID.ORGANIZATION_NAME,
    "subject_ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "subject_l": NameOID.LOCALITY_NAME,
    "subject_st": NameOID.STATE_OR_PROVINCE_NAME,
    "subject_c": NameOID.COUNTRY_NAME,
}
_ISSUER = {
    "issuer_cn": NameOID.COMMON_NAME,
    "issuer_o": NameOID.ORGANIZATION_NAME,
    "issuer_ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "issuer_c": NameOID.COUNTRY_NAME,
}


def _name(opts: Mapping[str, Any], fields: Mapping[str, x509.ObjectIdentifier]) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(oid, str(opts[key])) for key, oid in fields.items() if key in opts]
    )


def make_certificate(opts: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) as the options describe."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(opts, _SUBJECT) if any(k in opts for k in _SUBJECT) else None
    if subject is None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IP Camera")])
    self_signed = opts.get("self_signed", not any(k in opts for k in _ISSUER))
    if self_signed:
        issuer, signer = subject, key
    else:
        issuer = _name(opts, _ISSUER)
        signer = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(8), "big") | 1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )
    sans: list[x509.GeneralName] = []
    for entry in opts.get("san", []):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            sans.append(x509.DNSName(entry))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(opts: Mapping[str, Any]) -> ssl.SSLContext:
    cert_pem, key_pem = make_certificate(opts)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="lab-https-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)
        context.load_cert_chain(cert_path, key_path)
    return context


@register
class HttpsResponder(HttpResponder):
    kind = "https"
    options: ClassVar[Mapping[str, OptionType]] = {
        **HttpResponder.options,
        **dict.fromkeys(_SUBJECT, str),
        **dict.fromkeys(_ISSUER, str),
        "self_signed": bool,
        "san": list,
    }

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        for i, entry in enumerate(options.get("san", [])):
            check_type(f"san[{i}]", entry, str)
            if not entry:
                raise OptionError(f"san[{i}]", "must not be empty")
        for key in (*_SUBJECT, *_ISSUER):
            if key in options and not options[key]:
                raise OptionError(key, "must not be empty")
        for key in ("subject_c", "issuer_c"):
            if key in options and len(options[key]) != 2:
                raise OptionError(key, "a country is two letters")
        has_issuer = any(k in options for k in _ISSUER)
        if options.get("self_signed") and has_issuer:
            raise OptionError("self_signed", "a self-signed certificate has no separate issuer")
        if options.get("self_signed") is False and not has_issuer:
            raise OptionError("self_signed", "false needs issuer_cn or issuer_o")

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._guarded,
            sock=self.sockets[0],
            limit=self.read_limit,
            ssl=server_context(self.opts),
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
        )

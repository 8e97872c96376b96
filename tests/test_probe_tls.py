"""TLS certificates: parse_certificate on camera-style certificates, fuzzing, loopback probes.

The certificates are built here with `cryptography` from subjects and issuers
seen on real cameras (cited), since a camera's certificate carries its own
key and cannot be shipped as a fixture honestly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.responders.https import make_certificate
from scanner.errors import ParseError
from scanner.model import Source
from scanner.probe import http as hp
from scanner.probe import tls
from tests.test_probe_http import T0, Loopback, loopback_ctx

# rapid7/recog xml/x509_subjects.xml, "HIKVISION DVR"
HIK_SUBJECT = {
    NameOID.COUNTRY_NAME: "CN",
    NameOID.STATE_OR_PROVINCE_NAME: "ZheJiang",
    NameOID.LOCALITY_NAME: "HangZhou",
    NameOID.ORGANIZATION_NAME: "HIKVISION",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "DVRNVR",
    NameOID.COMMON_NAME: "www.hikvision.com",
}
# A Dahua camera in a Zeek ssl.log (Stratosphere capture quoted in the code index,
# id 33416491197): subject "OU=DAHUATECH,O=DAHUA,L=HANGZHOU,ST=ZHEJIANG,C=CN,CN=192.168.1.108",
# issuer "O=DahuaTech,L=HangZhou,ST=ZheJiang,C=CN,CN=Product Root CA"
DAHUA_SUBJECT = {
    NameOID.ORGANIZATIONAL_UNIT_NAME: "DAHUATECH",
    NameOID.ORGANIZATION_NAME: "DAHUA",
    NameOID.LOCALITY_NAME: "HANGZHOU",
    NameOID.STATE_OR_PROVINCE_NAME: "ZHEJIANG",
    NameOID.COUNTRY_NAME: "CN",
    NameOID.COMMON_NAME: "192.168.1.108",
}
DAHUA_ISSUER = {
    NameOID.ORGANIZATION_NAME: "DahuaTech",
    NameOID.LOCALITY_NAME: "HangZhou",
    NameOID.STATE_OR_PROVINCE_NAME: "ZheJiang",
    NameOID.COUNTRY_NAME: "CN",
    NameOID.COMMON_NAME: "Product Root CA",
}


def _name(fields: dict[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in fields.items()])


def make_cert(
    subject: dict[x509.ObjectIdentifier, str],
    issuer: dict[x509.ObjectIdentifier, str] | None = None,
    *,
    rsa_bits: int | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> bytes:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        if rsa_bits
        else ec.generate_private_key(ec.SECP256R1())
    )
    signer = key if issuer is None else ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime(2019, 6, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer or subject))
        .public_key(key.public_key())
        .serial_number(0x1A2B3C)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def hik_der() -> bytes:
    import ipaddress

    return make_cert(
        HIK_SUBJECT,
        rsa_bits=2048,
        sans=[
            x509.DNSName("www.hikvision.com"),
            x509.IPAddress(ipaddress.ip_address("192.168.1.64")),
        ],
    )


def test_hikvision_dvr_certificate(hik_der: bytes) -> None:
    got = tls.parse_certificate(hik_der)
    assert got["subject_cn"] == "www.hikvision.com"
    assert got["subject_o"] == "HIKVISION"
    assert got["subject_ou"] == "DVRNVR"
    assert got["subject_c"] == "CN"
    assert got["issuer_o"] == "HIKVISION"
    assert got["self_signed"] == "true"
    assert got["san"] == "www.hikvision.com 192.168.1.64"
    assert got["serial_number"] == "1a2b3c"
    assert got["not_before"] == "2019-06-01T00:00:00Z"
    assert got["not_after"] == "2029-05-29T00:00:00Z"
    assert got["key"] == "RSA 2048"
    assert got["signature"] == "sha256"
    assert len(got["sha256"]) == 64
    obs = tls.observe("198.51.100.20", 443, hik_der, version="TLSv1.2", cipher="AES", seen_at=T0)
    assert obs.source is Source.TLS
    assert obs.attrs["vendor_hint"] == "hikvision"
    assert obs.attrs["tls_version"] == "TLSv1.2"


def test_dahua_certificate_issued_by_its_product_ca() -> None:
    got = tls.parse_certificate(make_cert(DAHUA_SUBJECT, DAHUA_ISSUER))
    assert got["subject_cn"] == "192.168.1.108"
    assert got["subject_ou"] == "DAHUATECH"
    assert got["issuer_cn"] == "Product Root CA"
    assert got["issuer_o"] == "DahuaTech"
    assert got["self_signed"] == "false"
    assert got["key"] == "EC secp256r1"
    assert "san" not in got
    assert tls.cert_hints(got) == ["dahua"]


def test_non_breaking_spaces_in_names_are_normalised() -> None:
    # D4-project/Plum-Island#204: issuer "Dahua\xa0Device\xa0NVR\xa0CA"
    issuer = {
        NameOID.COMMON_NAME: "Dahua\xa0Device\xa0NVR\xa0CA",
        NameOID.ORGANIZATION_NAME: "Zhejiang\xa0Dahua\xa0Technology\xa0Co.,Ltd.",
    }
    got = tls.parse_certificate(make_cert({NameOID.COMMON_NAME: "192.168.2.70"}, issuer))
    assert got["issuer_cn"] == "Dahua Device NVR CA"
    assert got["issuer_o"] == "Zhejiang Dahua Technology Co.,Ltd."


def test_same_name_but_another_key_is_not_self_signed() -> None:
    subject = {NameOID.COMMON_NAME: "IP Camera"}
    got = tls.parse_certificate(make_cert(subject, dict(subject)))
    assert got["self_signed"] == "false"


@pytest.mark.parametrize(
    "data", [b"", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----", b"\x00" * 100]
)
def test_junk_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        tls.parse_certificate(data)
    obs = tls.observe("198.51.100.20", 443, data, version=None, cipher=None, seen_at=T0)
    assert obs.error is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_parse_error(data: bytes) -> None:
    try:
        got = tls.parse_certificate(data)
    except ParseError:
        return
    assert all(isinstance(v, str) for v in got.values())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_certificates_never_raise_anything_else(data: st.DataObject) -> None:
    der = bytearray(_EC_DER)
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        pos = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
        der[pos] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=1, max_value=len(der)))
    try:
        got = tls.parse_certificate(bytes(der[:cut]))
    except ParseError:
        return
    assert "sha256" in got


_EC_DER = make_cert(DAHUA_SUBJECT, DAHUA_ISSUER)


def test_client_context_fingerprints_rather_than_trusts() -> None:
    context = tls.client_context()
    assert context.verify_mode == ssl.CERT_NONE
    assert not context.check_hostname
    assert context.minimum_version <= ssl.TLSVersion.TLSv1_2


# ----------------------------------------------------------------- loopback


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    lb = Loopback()
    try:
        yield lb
    finally:
        lb.close()


def test_probe_reads_the_certificate(loopback: Loopback) -> None:
    port = loopback.serve(
        "https",
        subject_cn="www.hikvision.com",
        subject_ou="DVRNVR",
        subject_o="HIKVISION",
        subject_c="CN",
        san=["127.0.0.1"],
    )
    ctx = loopback_ctx()
    obs = tls.probe(ctx, "127.0.0.1", port)
    assert obs is not None and obs.error is None
    assert obs.attrs["subject_o"] == "HIKVISION"
    assert obs.attrs["san"] == "127.0.0.1"
    assert obs.attrs["self_signed"] == "true"
    assert obs.attrs["tls_version"].startswith("TLSv1")
    assert ctx.budget.sent["127.0.0.1"] == 3 + tls.TLS_REQUESTS


def test_https_probe_gives_certificate_and_page_from_one_connection(loopback: Loopback) -> None:
    port = loopback.serve(
        "https",
        server="App-webs/",
        body="<title>Hello</title>",
        issuer_cn="Dahua Device NVR CA",
        issuer_o="Zhejiang Dahua Technology Co.,Ltd.",
        subject_cn="127.0.0.1",
    )
    ctx = loopback_ctx()
    cert, page = hp.probe(ctx, "127.0.0.1", port, tls=True, vendor_paths=False)
    assert cert.source is Source.TLS and page.source is Source.HTTP
    assert cert.attrs["issuer_cn"] == "Dahua Device NVR CA"
    assert cert.attrs["self_signed"] == "false"
    assert page.attrs["scheme"] == "https"
    assert page.attrs["title"] == "Hello"
    assert ctx.budget.sent["127.0.0.1"] == 3 + hp.HTTPS_REQUESTS


def test_plain_http_on_a_tls_port_is_an_error_not_a_crash(loopback: Loopback) -> None:
    port = loopback.serve("http", server="Webs")
    assert tls.probe(loopback_ctx(), "127.0.0.1", port) is not None
    [obs] = hp.probe(loopback_ctx(), "127.0.0.1", port, tls=True)
    assert obs.error is not None and obs.error.startswith("tls")
    assert obs.attrs["open"] == "true"


def test_a_silent_tls_port_is_cut_off_at_the_deadline(loopback: Loopback) -> None:
    import time

    port = loopback.serve("http_hostile", mode="silent")
    ctx = loopback_ctx(timeout=0.4)
    t0 = time.monotonic()
    obs = tls.probe(ctx, "127.0.0.1", port)
    assert time.monotonic() - t0 < 2 * ctx.timeout + 0.5
    assert obs is not None and obs.error == "tls: deadline"


def test_legacy_tls_1_0_camera_still_hands_over_its_certificate(tmp_path: Path) -> None:
    """A 2012-era camera that speaks only TLS 1.0 (where this OpenSSL can still do it)."""
    cert_pem, key_pem = make_certificate({"subject_cn": "IP Camera", "subject_o": "HIKVISION"})
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            server.minimum_version = ssl.TLSVersion.TLSv1
            server.maximum_version = ssl.TLSVersion.TLSv1
        server.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot serve TLS 1.0: {exc}")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError):
            wrapped = server.wrap_socket(conn, server_side=True)
            wrapped.recv(1)
            wrapped.close()
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        obs = tls.probe(loopback_ctx(), "127.0.0.1", listener.getsockname()[1])
    finally:
        thread.join(5)
        listener.close()
    if obs is not None and obs.error is not None:
        pytest.skip(f"this OpenSSL refuses TLS 1.0 as a client: {obs.error}")
    assert obs is not None
    assert obs.attrs["tls_version"] == "TLSv1"
    assert obs.attrs["subject_o"] == "HIKVISION"

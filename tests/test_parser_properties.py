"""Property tests for the parsers of device replies and captures that had none.

Every function here reads bytes or text a device (or a capture) controls. The
property is the same for each: on any input it returns a result, or raises
the module's own parse error, never anything else, and never hangs.

Where the other parsers' property tests live:
  discovery   wsd.parse_probe_matches     tests/test_wsd.py
              onvif.parse_http/check_xml  tests/test_onvif.py
              ssdp.parse_response/_description   tests/test_ssdp.py
              mdns.parse_service, facts_from_instance   tests/test_mdns.py
              sadp/dhip/xmeye.parse_reply tests/test_{sadp,dhip,xmeye}.py
              arp.parse_reply             tests/test_arp_parse.py
  probes      http.parse_response, vendor_facts   tests/test_probe_http.py
              rtsp.parse_response, parse_sdp      tests/test_probe_rtsp.py
              tls.parse_certificate       tests/test_probe_tls.py
  captures    decode.decode, dnsmap.parse_dns_response/parse_sni
                                          tests/test_capture_parse.py
              pcap.CaptureFile            tests/test_capture_pcap.py
              zeek.read_conn_log          tests/test_capture_zeek.py
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.capture import dnsmap
from scanner.discovery import mdns, onvif, sadp, ssdp, wsd, xmeye
from scanner.errors import ParseError
from scanner.probe import (
    _dechunk,
    message_length,
    parse_challenges,
    parse_headers,
    realm_facts,
    rtsp,
)
from scanner.probe import http as hp

EXAMPLES = settings(max_examples=200, deadline=None)

# bytes that look like what the parsers look for, mixed with anything at all
_TOKENS = [
    b"HTTP/1.1 200 OK\r\n",
    b"RTSP/1.0 401 Unauthorized\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: -5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n",
    b"\n",
    b"0\r\n\r\n",
    b"-6\r\n",
    b"ffffffff\r\n",
    b"<title>",
    b"</title>",
    b"uuid:",
    b"::",
    b'realm="',
    b"Digest ",
    b"Basic ",
    b"http://",
    b"[",
    b":99999",
    b"\x00",
    b"\xff",
    b"\x1b[31m",
]
messy = st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=16), max_size=24).map(b"".join)
text = st.text(max_size=200) | messy.map(lambda b: b.decode("latin-1"))


def _total(fn: Callable[[], Any], *allowed: type[BaseException]) -> Any:
    """fn's result; an exception other than `allowed` fails the test."""
    try:
        return fn()
    except allowed:
        return None


# ------------------------------------------------- shared HTTP/RTSP framing


@EXAMPLES
@given(messy, st.booleans())
def test_message_length_is_total(data: bytes, eof_delimited: bool) -> None:
    n = message_length(data, eof_delimited=eof_delimited)
    assert n is None or 0 <= n <= len(data)


@EXAMPLES
@given(messy)
def test_dechunk_is_total_and_never_grows_past_its_input(data: bytes) -> None:
    body, _complete = _dechunk(data)
    assert len(body) <= len(data)


@EXAMPLES
@given(st.lists(messy, max_size=8))
def test_parse_headers_is_total(lines: list[bytes]) -> None:
    headers = parse_headers(lines)
    assert all(isinstance(v, str) for v in headers.get_all("server"))


@EXAMPLES
@given(st.lists(text, max_size=4))
def test_auth_challenges_and_realms_are_total(values: list[str]) -> None:
    for ch in parse_challenges(values):
        assert isinstance(ch.scheme, str)
    for v in values:
        assert all(isinstance(x, str) for x in realm_facts(v).values())


@EXAMPLES
@given(messy)
def test_done_checks_are_total(data: bytes) -> None:
    assert isinstance(hp._http_done(data), bool)
    assert isinstance(rtsp._rtsp_done(data), bool)
    assert isinstance(onvif._complete(data), bool)
    assert isinstance(ssdp._complete(bytearray(data)), bool)


@EXAMPLES
@given(messy, st.sampled_from(["text/html", "text/html; charset=gbk", "text/html; charset=x"]))
def test_html_title_is_total(body: bytes, content_type: str) -> None:
    headers = parse_headers([b"Content-Type: " + content_type.encode()])
    title = hp.html_title(body, headers)
    assert title is None or isinstance(title, str)


@EXAMPLES
@given(messy)
def test_sdp_is_total(body: bytes) -> None:
    assert all(isinstance(v, str) for v in rtsp.parse_sdp(body).values())


# ------------------------------------------------------------------- SSDP


@EXAMPLES
@given(messy)
def test_ssdp_dechunk_is_total(data: bytes) -> None:
    body, error = ssdp._dechunk(data)  # a negative chunk size once looped for ever
    assert error is None or isinstance(error, str)
    assert len(body) <= len(data)


@EXAMPLES
@given(text, text)
def test_ssdp_url_and_usn_helpers_are_total(url: str, other: str) -> None:
    _total(lambda: ssdp.location_host(url))
    split = ssdp._split_http_url(url)
    if split is not None:
        _host, port, target = split
        assert 0 <= port <= 65535 and target.startswith("/")
        assert not any(c in target for c in "\r\n ")
    uuid = ssdp.uuid_from(url)
    assert uuid is None or (uuid and "\n" not in uuid)
    assert isinstance(ssdp.pick_model(url, other), str)


# ----------------------------------------------------- WS-Discovery / ONVIF


@EXAMPLES
@given(st.lists(text, max_size=8))
def test_wsd_scope_and_address_helpers_are_total(values: list[str]) -> None:
    facts, camera = wsd._scope_facts(values)
    assert isinstance(camera, bool)
    assert all(len(v) <= wsd.MAX_VALUE for v in facts.values())
    for v in values:
        assert isinstance(wsd.strip_uuid(v), str)
        wsd._xaddr_host(v)


@EXAMPLES
@given(text, st.integers(0, 65535))
def test_onvif_device_url_is_total(xaddr: str, port: int) -> None:
    url, _tls, used = onvif.device_url("198.51.100.10", port, xaddr)
    assert url.startswith(("http://198.51.100.10:", "https://198.51.100.10:"))
    assert not any(c in url for c in "\r\n ")
    if not used:
        assert url.endswith(onvif.DEVICE_PATH)


# -------------------------------------------------------------------- mDNS


@EXAMPLES
@given(messy)
def test_txt_properties_are_total(raw: bytes) -> None:
    props = mdns.txt_properties(raw)
    assert len(props) <= mdns.MAX_TXT_KEYS
    assert all(k and b"=" not in k for k in props)
    assert isinstance(mdns.txt_text(props), str)


@EXAMPLES
@given(text, text)
def test_mdns_name_helpers_are_total(name: str, service_type: str) -> None:
    assert isinstance(mdns.instance_of(name, service_type), str)
    assert all(len(v) <= mdns.MAX_VALUE for v in mdns.facts_from_host(name).values())
    mac = mdns.normalise_mac(name)
    assert mac is None or len(mac) == 17


# -------------------------------------------------------- vendor searches


@EXAMPLES
@given(messy)
def test_vendor_text_helpers_are_total(data: bytes) -> None:
    decoded, _ok = sadp.decode_text(data)
    obj, error = sadp.load_json_object(decoded)
    assert obj is None or isinstance(obj, dict)
    assert error is None or isinstance(error, str)
    assert isinstance(sadp.salvage_json(decoded, ["SerialNo", "MAC", "Vendor"]), dict)


@EXAMPLES
@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text, messy))
def test_xmeye_address_is_total(value: object) -> None:
    addr = xmeye.decode_address(value)
    if addr is not None:
        IPv4Address(addr)


# ---------------------------------------------------------------- captures


@EXAMPLES
@given(messy)
def test_http_host_is_total(payload: bytes) -> None:
    host = dnsmap.parse_http_host(payload)
    assert host is None or (host == host.lower() and " " not in host)


@EXAMPLES
@given(messy, st.booleans())
def test_dns_message_framing_is_total(payload: bytes, tcp: bool) -> None:
    with contextlib.suppress(dnsmap.BadNameData):
        dnsmap.parse_dns_response(dnsmap.dns_message(payload, tcp))


@EXAMPLES
@given(text)
def test_host_name_is_total(value: str) -> None:
    name = dnsmap.host_name(value)
    assert name is None or (name and not any(c.isspace() for c in name))


def test_parse_error_is_the_one_parse_error() -> None:
    # the modules that keep their own parse error say what it is; it is never bare
    for exc in (onvif.ReplyError, dnsmap.BadNameData):
        assert issubclass(exc, Exception) and exc is not Exception
    with pytest.raises(ParseError):
        hp.parse_response(b"")


def test_a_negative_chunk_size_ends_the_ssdp_body() -> None:
    # found by test_ssdp_dechunk_is_total: "-6" made the reader step back for ever
    assert ssdp._dechunk(b"-6\r\nabcdef\r\n0\r\n\r\n") == (b"", "bad chunked encoding")


def test_non_ascii_digits_are_not_lengths_or_status_codes() -> None:
    """'¹'.isdigit() is true in Python and int() refuses it: found by hypothesis."""
    from scanner.discovery import ssdp
    from scanner.probe import content_length, parse_message

    headers = parse_message(b"RTSP/1.0 200 OK\r\nContent-Length: \xc2\xb9\r\n\r\n", b"RTSP").headers
    assert content_length(headers) is None
    assert not ssdp._complete(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n"))

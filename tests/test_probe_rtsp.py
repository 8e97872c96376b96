"""RTSP banners: replies of real cameras (quoted in public issues), fuzzing, loopback probes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.errors import ParseError
from scanner.model import Source
from scanner.probe import rtsp
from tests.test_probe_http import T0, Loopback, loopback_ctx

IP = "198.51.100.22"


def with_length(head: bytes, body: bytes) -> bytes:
    return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


# Axis, AXIS OS with GStreamer (home-assistant/core#122159; realm redacted there)
AXIS_401 = (
    b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n"
    b'WWW-Authenticate: Digest realm="AXIS_XXX", nonce="XXX", stale=FALSE\r\n'
    b"Server: GStreamer RTSP server\r\nDate: Wed, 07 Aug 2024 05:18:31 GMT\r\n\r\n"
)
AXIS_SDP = (
    b"v=0\r\no=- 12131067987285694320 1 IN IP4 192.168.30.154\r\n"
    b"s=Session streamed with GStreamer\r\ni=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\n"
    b"a=type:broadcast\r\na=range:npt=now-\r\n"
    b"a=control:rtsp://192.168.30.154/axis-media/media.amp?video=0&audio=0&event=on\r\n"
    b"m=application 0 RTP/AVP 98\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:98 vnd.onvif.metadata/90000\r\n"
)
AXIS_200 = with_length(
    b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n"
    b"Content-Base: rtsp://192.168.30.154/axis-media/media.amp/\r\n"
    b"Server: GStreamer RTSP server\r\nDate: Wed, 07 Aug 2024 05:18:31 GMT\r\n",
    AXIS_SDP,
)

# Dahua OPTIONS answer (openhab ipcamera handler comments, code index 10192776484)
DAHUA_OPTIONS = (
    b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: Rtsp Server/3.0\r\n"
    b"Public: OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, "
    b"SET_PARAMETER, GET_PARAMETER\r\n\r\n"
)
# Dahua DESCRIBE without credentials (scottlamb/retina#62)
DAHUA_401 = (
    b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n"
    b'WWW-Authenticate: Digest realm="Login to 4K01FD2PAJ6E3FF", '
    b'nonce="203c8d27b595204504dfa65fd22586bd"\r\n\r\n'
)

# Hikvision: Basic challenge and the firmware's two-space Date (blakeblackshear/frigate#9006)
HIK_401 = (
    b"RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\n"
    b'WWW-Authenticate: Basic realm="IP Camera(L4906)"\r\n'
    b"Date:  Mon, Dec 18 2023 21:19:09 GMT\r\n\r\n"
)
# Hikvision DESCRIBE with credentials (mpromonet/webrtc-streamer#138), SDP shortened
HIK_SDP = (
    b"v=0\r\no=- 1534930022996637 1534930022996637 IN IP4 192.168.1.4\r\n"
    b"s=Media Presentation\r\ne=NONE\r\nb=AS:5050\r\nt=0 0\r\n"
    b"a=control:rtsp://192.168.1.4:554/h264/ch1/main/av_stream/\r\n"
    b"m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:5000\r\na=recvonly\r\n"
    b"a=rtpmap:96 H264/90000\r\n"
    b"a=Media_header:MEDIAINFO=494D4B48010200000400000100000000000000000000000000000000;\r\n"
)
HIK_200 = with_length(
    b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Type: application/sdp\r\n"
    b"Content-Base: rtsp://admin:admin000@192.168.1.4:554/h264/ch1/main/av_stream/\r\n",
    HIK_SDP,
)

# Hanwha (ex-Samsung) camera (Ullaakut/cameradar#199): realm "iPOLiS", SDP "i=samsung"
HANWHA_401 = (
    b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nDate: Thu, 23 May 2019 02:57:00 GMT\r\n"
    b"Expires: Thu, 23 May 2019 02:57:00 GMT\r\nCache-Control: must-revalidate\r\n"
    b'WWW-Authenticate: Digest realm="iPOLiS", nonce="BA2BBD4E602A4CD5E08ACC0896D1234E"\r\n\r\n'
)
HANWHA_200 = with_length(
    b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n",
    b"v=0\r\no=- 0 0 IN IP4 10.56.30.17\r\ns=Media Presentation\r\ni=samsung\r\n"
    b"c=IN IP4 0.0.0.0\r\n",
)

# Reolink on an old live555 (scottlamb/retina#17), LF-only as the issue shows it
REOLINK_200 = (
    b"RTSP/1.0 200 OK\nCSeq: 4\nDate: Wed, Aug 25 2021 02:21:10 GMT\n"
    b"Content-Base: rtsp://192.168.1.48/h264Preview_01_main/\nContent-Type: application/sdp\n\n"
    b'v=0\no=- 1629795645777963 1 IN IP4 192.168.1.48\ns=Session streamed by "preview"\n'
    b"i=h264Preview_01_main\nt=0 0\na=tool:LIVE555 Streaming Media v2013.04.08\n"
)


def test_axis_replies() -> None:
    challenge = rtsp.parse_response(AXIS_401)
    describe = rtsp.parse_response(AXIS_200)
    assert challenge.status == 401 and describe.status == 200 and describe.complete
    obs = rtsp.observe(IP, 554, challenge, describe, T0)
    assert obs.source is Source.RTSP
    assert obs.attrs["server"] == "GStreamer RTSP server"
    assert obs.attrs["realm"] == "AXIS_XXX"
    assert obs.attrs["sdp_session"] == "Session streamed with GStreamer"
    assert obs.attrs["sdp_info"] == "rtsp-server"
    assert obs.attrs["sdp_tool"] == "GStreamer"
    assert obs.attrs["rtsp_url"] == "rtsp://192.168.30.154/axis-media/media.amp/"


def test_dahua_server_public_and_serial_from_realm() -> None:
    obs = rtsp.observe(
        IP, 554, rtsp.parse_response(DAHUA_OPTIONS), rtsp.parse_response(DAHUA_401), T0
    )
    assert obs.attrs["status"] == "200"
    assert obs.attrs["describe_status"] == "401"
    assert obs.attrs["server"] == "Rtsp Server/3.0"
    assert obs.attrs["public"].split()[:3] == ["OPTIONS", "DESCRIBE", "ANNOUNCE"]
    assert obs.attrs["serial"] == "4K01FD2PAJ6E3FF"
    assert obs.attrs["vendor_hint"] == "dahua"
    assert obs.error is None


def test_hikvision_realm_and_sdp_media_header() -> None:
    obs = rtsp.observe(IP, 554, rtsp.parse_response(HIK_401), rtsp.parse_response(HIK_200), T0)
    assert obs.attrs["realm"] == "IP Camera(L4906)"
    assert obs.attrs["auth_scheme"] == "Basic"
    assert obs.attrs["sdp_session"] == "Media Presentation"
    assert obs.attrs["sdp_media_header"].startswith("MEDIAINFO=494D4B48")
    assert obs.attrs["rtsp_url"] == "rtsp://192.168.1.4:554/h264/ch1/main/av_stream/"  # no creds
    assert obs.attrs["vendor_hint"] == "hikvision"
    assert "server" not in obs.attrs


def test_hanwha_and_reolink() -> None:
    hanwha = rtsp.observe(
        IP, 554, rtsp.parse_response(HANWHA_401), rtsp.parse_response(HANWHA_200), T0
    )
    assert hanwha.attrs["realm"] == "iPOLiS"
    assert hanwha.attrs["sdp_info"] == "samsung"
    assert hanwha.attrs["vendor_hint"] == "hanwha"
    reolink = rtsp.parse_response(REOLINK_200)
    assert reolink.headers.get("content-base") == "rtsp://192.168.1.48/h264Preview_01_main/"
    sdp = rtsp.parse_sdp(reolink.body)
    assert sdp["sdp_tool"] == "LIVE555 Streaming Media v2013.04.08"
    assert sdp["sdp_session"] == 'Session streamed by "preview"'


@pytest.mark.parametrize(
    "data",
    [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"RTSP/1.0 2OO OK\r\n\r\n", b"\xff\xfe\x00"],
)
def test_not_rtsp_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        rtsp.parse_response(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048), st.binary(max_size=2048))
def test_any_bytes_parse_or_parse_error(first: bytes, second: bytes) -> None:
    replies = []
    for data in (first, second):
        try:
            replies.append(rtsp.parse_response(data))
        except ParseError:
            replies.append(None)
    obs = rtsp.observe(IP, 554, replies[0], replies[1], T0)
    assert all(isinstance(v, str) and len(v) <= 512 for v in obs.attrs.values())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=100, max_value=999),
    st.lists(
        st.tuples(
            st.sampled_from(
                ["Server", "Public", "WWW-Authenticate", "Content-Length", "Content-Base"]
            ),
            st.text(max_size=80),
        ),
        max_size=6,
    ),
    st.binary(max_size=512),
)
def test_rtsp_shaped_bytes_never_raise(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    head = f"RTSP/1.0 {status} X\r\n".encode()
    for name, value in headers:
        head += f"{name}: {value}\r\n".encode("utf-8", "replace")
    reply = rtsp.parse_response(head + b"\r\n" + body)
    obs = rtsp.observe(IP, 554, reply, reply, T0)
    assert obs.attrs["status"] == str(status)
    assert isinstance(rtsp.parse_sdp(body), dict)


# ----------------------------------------------------------------- loopback


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    lb = Loopback()
    try:
        yield lb
    finally:
        lb.close()


def test_probe_options_then_describe(loopback: Loopback) -> None:
    port = loopback.serve(
        "rtsp", server="Rtsp Server/3.0", realm="Login to 4K01FD2PAJ6E3FF", auth="both"
    )
    ctx = loopback_ctx()
    obs = rtsp.probe(ctx, "127.0.0.1", port)
    assert obs is not None and obs.error is None
    assert obs.attrs["server"] == "Rtsp Server/3.0"
    assert obs.attrs["status"] == "200" and obs.attrs["describe_status"] == "401"
    assert obs.attrs["auth_scheme"] == "Digest Basic"
    assert obs.attrs["serial"] == "4K01FD2PAJ6E3FF"
    assert ctx.budget.sent["127.0.0.1"] == 3 + rtsp.RTSP_REQUESTS


def test_probe_reads_an_open_describe(loopback: Loopback) -> None:
    port = loopback.serve("rtsp", sdp=HIK_SDP.decode())
    obs = rtsp.probe(loopback_ctx(), "127.0.0.1", port)
    assert obs is not None
    assert obs.attrs["describe_status"] == "200"
    assert obs.attrs["rtsp_url"] == f"rtsp://127.0.0.1:{port}/"
    assert obs.attrs["vendor_hint"] == "hikvision"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("slowloris", "deadline"),
        ("endless", "oversized"),
        ("huge", "oversized"),
        ("malformed", "not rtsp"),
    ],
)
def test_hostile_rtsp_servers(loopback: Loopback, mode: str, error: str) -> None:
    port = loopback.serve("rtsp", mode=mode, interval=0.2)
    ctx = loopback_ctx(timeout=0.5)
    t0 = time.monotonic()
    obs = rtsp.probe(ctx, "127.0.0.1", port)
    assert time.monotonic() - t0 < 2 * ctx.timeout + 0.5
    assert obs is not None and obs.error == error
    assert "describe_status" not in obs.attrs  # no second request to a misbehaving server


def test_a_web_server_on_the_rtsp_port(loopback: Loopback) -> None:
    port = loopback.serve("http", server="Webs")
    obs = rtsp.probe(loopback_ctx(), "127.0.0.1", port)
    assert obs is not None
    assert obs.error is not None and obs.error.startswith("not rtsp")
    assert bytes.fromhex(obs.attrs["raw"]).startswith(b"HTTP/1.1 400")

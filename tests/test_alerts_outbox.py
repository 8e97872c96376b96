"""The outbox end to end on a real SQLite file and a real aiosmtpd on loopback.

First run: one summary listing every finding (the rule in scanner/alerts/outbox.py);
after that one mail per new finding; nothing lost while the server is down,
each alert delivered exactly once, storms folded under the hourly cap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner.alerts import outbox
from scanner.alerts.deliver import backoff, flush, process_outbox
from scanner.alerts.settings import EmailSettings
from scanner.model import Evidence, Identification, Observation, Source, Verdict, iso
from scanner.store import DeviceRecord, ScanRecord, Store
from tests.helpers import device
from tests.test_alerts_smtp import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
NET = "198.51.100.0/24"
FLAGGED = {
    "44:19:b6:00:00:02": ("198.51.100.10", "Hikvision"),
    "bc:ad:28:00:00:03": ("198.51.100.11", "Hikvision"),
    "e0:50:8b:00:00:04": ("198.51.100.12", "Dahua"),
}


def lab_devices() -> list[DeviceRecord]:
    """The foundation lab as records: 3 flagged, 2 non-home, 2 home, 1 unknown."""
    out = [
        device(ip, mac, maker=maker, verdict=Verdict.FLAGGED)
        for mac, (ip, maker) in FLAGGED.items()
    ]
    out.append(device("198.51.100.13", "ac:cc:8e:00:00:05", maker="Axis Communications"))
    out.append(device("198.51.100.16", "00:04:63:00:00:08", maker="Bosch Security Systems"))
    out.append(
        device("198.51.100.14", "00:07:c7:00:00:06", maker="Synectics", verdict=Verdict.HOME)
    )
    out.append(device("198.51.100.15", "00:d0:d9:00:00:07", maker="DM", verdict=Verdict.HOME))
    out.append(device("198.51.100.17", "0a:1b:2c:3d:4e:09", maker=None, verdict=Verdict.UNKNOWN))
    return out


def scan_at(
    t: datetime, devices: Sequence[DeviceRecord], cidrs: Sequence[str] = (NET,)
) -> ScanRecord:
    return ScanRecord(
        started_at=iso(t),
        finished_at=iso(t + timedelta(seconds=5)),
        interfaces=["lab0"],
        cidrs=list(cidrs),
        devices=[replace(d) for d in devices],  # record_scan rewrites keys
        scanner_version="test",
    )


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    s = SmtpSink().start()
    yield s
    s.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "scan.db") as s:
        yield s


def record(
    store: Store,
    t: datetime,
    devices: Sequence[DeviceRecord],
    settings: EmailSettings | None,
    cidrs: Sequence[str] = (NET,),
) -> int:
    return store.record_scan(scan_at(t, devices, cidrs), findings_for=outbox.recorder(settings))


def test_first_scan_sends_one_summary_listing_every_finding(store: Store, sink: SmtpSink) -> None:
    s = sink.settings()
    record(store, T0, lab_devices(), s)
    result = process_outbox(store, s, T0 + timedelta(seconds=10))
    assert (result.sent, result.failed, result.waiting) == (1, 0, 0)
    [mail] = sink.wait_for(1)
    assert mail["Subject"] == (
        f"[scanner] First scan of {NET}: 8 devices, 3 flagged, 2 non-home-origin"
    )
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # at a glance, then one section each
    assert text.count("  - New flagged device:") == 3
    assert text.count("  - New non-home-origin device:") == 2
    assert text.count("\nNew flagged device:") == 3
    for mac in FLAGGED:
        assert mac in text
    # flagged first
    assert text.index("New flagged device") < text.index("New non-home-origin device")
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.count("<h2>New flagged device:") == 3 and "<a " not in html
    rows = store.alerts()
    assert sorted((r["kind"], r["status"]) for r in rows) == [
        *[("finding", "bundled")] * 5,
        ("summary", "sent"),
    ]
    assert len(store.findings()) == 5

    # the same network scanned again, nothing changed: no mail
    record(store, T0 + timedelta(hours=1), lab_devices(), s)
    assert process_outbox(store, s, T0 + timedelta(hours=1, seconds=10)).sent == 0
    assert len(sink.messages) == 1 and len(store.findings()) == 5

    # a new flagged device: exactly one mail about it
    late = device("198.51.100.30", "44:19:b6:00:00:30", maker="Hikvision", verdict=Verdict.FLAGGED)
    record(store, T0 + timedelta(hours=2), [*lab_devices(), late], s)
    assert process_outbox(store, s, T0 + timedelta(hours=2, seconds=10)).sent == 1
    mail = sink.wait_for(2)[1]
    assert mail["Subject"] == "[scanner] New flagged device: Hikvision at 198.51.100.30"
    assert "44:19:b6:00:00:30" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_without_email_findings_are_recorded_and_nothing_is_queued(store: Store) -> None:
    record(store, T0, lab_devices(), None)
    assert len(store.findings()) == 5
    assert store.alerts() == []


def test_a_new_network_gets_its_own_summary(store: Store, sink: SmtpSink) -> None:
    s = sink.settings()
    record(store, T0, lab_devices(), s)
    other = device("203.0.113.7", "44:19:b6:00:00:77", maker="Hikvision", verdict=Verdict.FLAGGED)
    record(store, T0 + timedelta(hours=1), [*lab_devices(), other], s, (NET, "203.0.113.0/24"))
    process_outbox(store, s, T0 + timedelta(hours=1, seconds=10))
    subjects = [m["Subject"] for m in sink.wait_for(2)]
    assert subjects[1] == (
        "[scanner] First scan of 203.0.113.0/24: 1 devices, 1 flagged, 0 non-home-origin"
    )


def test_server_down_then_back_delivers_each_alert_exactly_once(store: Store) -> None:
    sink = SmtpSink()  # not started: the port refuses connections
    s = sink.settings()
    record(store, T0, lab_devices(), s)
    t = T0 + timedelta(seconds=10)
    down = process_outbox(store, s, t)
    assert (down.sent, down.failed, down.waiting) == (0, 1, 1)
    assert "connection refused" in (down.error or "")
    [row] = store.alerts(status="pending")
    assert row["attempts"] == 1 and row["next_attempt_at"] == iso(t + timedelta(seconds=60))
    # still down a minute later: back-off doubles
    process_outbox(store, s, t + timedelta(seconds=61))
    [row] = store.alerts(status="pending")
    assert row["attempts"] == 2 and row["next_attempt_at"] == iso(t + timedelta(seconds=181))
    # inside the back-off nothing is tried
    assert process_outbox(store, s, t + timedelta(seconds=100)).failed == 0
    sink.start()
    try:
        back = process_outbox(store, s, t + timedelta(seconds=200))
        assert (back.sent, back.waiting) == (1, 0)
        for minutes in (5, 60, 600):
            assert process_outbox(store, s, t + timedelta(minutes=minutes)).sent == 0
        assert flush(store, s, t + timedelta(hours=20)).sent == 0
        [mail] = sink.wait_for(1)
        assert mail["Subject"].startswith("[scanner] First scan of")
        [row] = store.alerts(status="sent")
        stamp = row["created_at"].replace("-", "").replace(":", "")
        assert mail["Message-ID"] == f"<scanner-alert-{row['id']}-{stamp}@force.example>"
        assert mail["X-Scanner-Attempt"] == "3"
    finally:
        sink.stop()


def test_backoff_doubles_to_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 9)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip


def test_a_claim_is_taken_once_and_a_lost_one_is_resent_with_the_same_id(
    tmp_path: Path, sink: SmtpSink
) -> None:
    s = sink.settings()
    db = tmp_path / "claim.db"
    with Store.open(db) as a, Store.open(db) as b:
        aid = a.add_alert(
            kind="finding", subject="[scanner] x", body="x\n", html="", created_at=iso(T0)
        )
        now, lease = iso(T0), iso(T0 + timedelta(minutes=5))
        assert a.claim_alert(aid, now, lease) is True
        assert b.claim_alert(aid, now, lease) is False  # a second sender loses
        # the first sender died mid-send: after the lease it goes again, marked
        assert process_outbox(b, s, T0 + timedelta(minutes=1)).sent == 0
        assert process_outbox(b, s, T0 + timedelta(minutes=6)).sent == 1
    [mail] = sink.wait_for(1)
    assert mail["X-Scanner-Attempt"] == "2"
    assert mail["Message-ID"].startswith(f"<scanner-alert-{aid}-")


def test_storm_is_capped_with_a_suppressed_line(store: Store, sink: SmtpSink) -> None:
    s = sink.settings(max_per_hour=3)
    record(store, T0, lab_devices(), s)  # baseline
    process_outbox(store, s, T0)
    many = [
        device(
            f"198.51.100.{100 + i}",
            f"44:19:b6:00:01:{i:02x}",
            maker="Hikvision",
            verdict=Verdict.FLAGGED,
        )
        for i in range(10)
    ]
    record(store, T0 + timedelta(minutes=1), [*lab_devices(), *many], s)
    t = T0 + timedelta(minutes=2)
    result = process_outbox(store, s, t)
    assert (result.sent, result.waiting) == (2, 0)  # summary + 2 = the cap of 3
    mails = sink.wait_for(3)
    assert len(mails) == 3
    assert mails[1]["Subject"].startswith("[scanner] New flagged device")
    assert mails[2]["Subject"] == "[scanner] 9 alerts suppressed by the hourly cap"
    body = mails[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "9 alerts suppressed" in body and body.count("New flagged device:") >= 9
    # the hour is full: the next one waits, then goes
    late = device("198.51.100.200", "44:19:b6:00:02:00", maker="Hikvision", verdict=Verdict.FLAGGED)
    record(store, T0 + timedelta(minutes=3), [*lab_devices(), *many, late], s)
    assert process_outbox(store, s, T0 + timedelta(minutes=4)).sent == 0
    assert process_outbox(store, s, T0 + timedelta(minutes=63)).sent == 1
    assert len(sink.wait_for(4)) == 4
    assert {r["status"] for r in store.alerts()} == {"sent", "bundled"}


def test_digest_mode_batches_findings(store: Store, sink: SmtpSink) -> None:
    s = sink.settings(mode="digest", digest_minutes=60)
    record(store, T0, lab_devices(), s)
    process_outbox(store, s, T0)  # the first-run summary goes at once
    for i in range(3):
        d = device(
            f"198.51.100.{50 + i}",
            f"44:19:b6:00:03:{i:02x}",
            maker="Hikvision",
            verdict=Verdict.FLAGGED,
        )
        record(store, T0 + timedelta(minutes=10 + i), [*lab_devices(), d], s)
    assert len(store.alerts(status="queued")) == 3
    assert process_outbox(store, s, T0 + timedelta(minutes=15)).sent == 1  # no digest yet: first
    mails = sink.wait_for(2)
    assert mails[1]["Subject"] == "[scanner] Digest: 3 new findings"
    d = device("198.51.100.60", "44:19:b6:00:03:99", maker="Hikvision", verdict=Verdict.FLAGGED)
    record(store, T0 + timedelta(minutes=20), [*lab_devices(), d], s)
    assert process_outbox(store, s, T0 + timedelta(minutes=30)).sent == 0  # within 60 min
    assert process_outbox(store, s, T0 + timedelta(minutes=76)).sent == 1
    assert sink.wait_for(3)[2]["Subject"] == "[scanner] Digest: 1 new finding"


def test_a_failing_hook_leaves_no_scan_and_no_alerts(store: Store) -> None:
    def broken(*args: object) -> None:
        outbox.recorder(SmtpSink().settings())(*args)  # type: ignore[arg-type]
        raise RuntimeError("crash after the findings were written")

    with pytest.raises(RuntimeError):
        store.record_scan(scan_at(T0, lab_devices()), findings_for=broken)
    assert store.scans() == [] and store.devices() == []
    assert store.findings() == [] and store.alerts() == []


HOSTILE_NAME = "<script>alert(1)</script>\x1b[2J\x1b]0;pwned\x07 lobby\r\nBcc: x@evil.example"
HOSTILE_MODEL = '=HYPERLINK("http://evil.example/x","click")'


def hostile() -> DeviceRecord:
    d = device("198.51.100.66", "44:19:b6:00:00:66", maker="Hikvision", verdict=Verdict.FLAGGED)
    d.identification = Identification(
        vendor="Hikvision",
        maker="Hikvision",
        model=HOSTILE_MODEL,
        firmware="V5\u202eexe.fdp",
        evidence=(Evidence("http", "server", "<b>App-webs/</b>\x1b[31m", "hik-http"),),
    )
    d.observations = [
        Observation(
            source=Source.HTTP,
            ip=d.ip,
            seen_at=T0,
            attrs={"name": HOSTILE_NAME},
        )
    ]
    return d


def test_hostile_device_text_is_escaped_in_mails(store: Store, sink: SmtpSink) -> None:
    s = sink.settings()
    record(store, T0, lab_devices(), s)
    process_outbox(store, s, T0)
    record(store, T0 + timedelta(hours=1), [*lab_devices(), hostile()], s)
    process_outbox(store, s, T0 + timedelta(hours=1))
    mail = sink.wait_for(2)[1]
    assert "Bcc" not in mail and mail["To"] == "soc@force.example"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for part in (text, html, mail["Subject"]):
        assert "\x1b" not in part and "\x07" not in part and "\u202e" not in part
        assert "http://" not in part  # defanged: no client makes it a link
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>App-webs" not in html and "&lt;b&gt;App-webs" in html
    assert "lobby\ufffd\ufffdBcc: x@evil.example" in text  # one line, visibly mangled
    assert "http[:]//evil.example" in text
    raw = json.dumps(store.findings()[-1]["detail"])  # the DB keeps the evidence as seen
    assert "\\u001b" in raw


def test_retention_drops_old_observations_and_delivered_mail(store: Store, sink: SmtpSink) -> None:
    s = sink.settings()
    record(store, T0, lab_devices(), s)
    process_outbox(store, s, T0)
    removed = store.prune(iso(T0 + timedelta(days=1)))
    assert removed == {"observations": 8, "alerts": 6}
    assert len(store.findings()) == 5 and len(store.devices()) == 8  # dedupe memory stays
    record(store, T0 + timedelta(days=2), lab_devices(), s)
    assert store.alerts() == []  # nothing new: no re-alerting after the clean-up

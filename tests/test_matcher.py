"""The matcher over mixed evidence: strength, conflicts, OEM relabels, stability."""

from __future__ import annotations

import itertools

from scanner.fingerprint import _MEMO_MAX, default_db, identify
from scanner.model import Identification, Observation, Source, utcnow
from scanner.oui import OuiRegistry

DB = default_db()
OUI = OuiRegistry.default()


def obs(source: Source, mac: str | None = None, **attrs: str) -> Observation:
    return Observation(source=source, ip="198.51.100.10", seen_at=utcnow(), mac=mac, attrs=attrs)


def ident(*observations: Observation) -> Identification:
    return identify(list(observations), OUI, DB)


def test_a_devices_own_onvif_answer_outranks_its_network_chips_registrant() -> None:
    # an Axis-registered NIC inside a box that says Hikvision over ONVIF
    i = ident(
        obs(Source.ARP, mac="00:40:8c:00:00:01"),
        obs(Source.ONVIF, manufacturer="HIKVISION", model="DS-2CD2143G0-I"),
    )
    assert i.maker == "Hikvision" and i.confidence == "strong"
    assert i.registrant == "Axis Communications AB"
    assert not i.conflicts  # a weak OUI claim is evidence, not a conflict


def test_strong_claims_that_disagree_are_reported_not_resolved_silently() -> None:
    i = ident(
        obs(Source.ONVIF, manufacturer="Axis"),
        obs(Source.SSDP, manufacturer="Dahua", model="IPC-HDW2431T-AS"),
    )
    assert i.conflicts
    assert any("disagrees with" in c for c in i.conflicts)


def test_generic_servers_never_name_a_vendor() -> None:
    for server in ("Boa/0.94.14rc21", "lighttpd/1.4.35", "GoAhead-Webs", "mini_httpd/1.19"):
        i = ident(obs(Source.HTTP, server=server))
        assert i.maker is None and i.vendor is None, server


def test_a_relabelled_box_resolves_to_its_maker_with_the_rule_named() -> None:
    i = ident(obs(Source.SSDP, manufacturer="LTS", model_number="DS-2CD2343G2-IU"))
    assert (i.vendor, i.maker) == ("LTS", "Hikvision")
    assert any(e.rule == "hik-model-ds" for e in i.evidence)


def test_the_verdict_does_not_depend_on_which_probe_answered_first() -> None:
    # two medium claims of equal weight: the answer must be the same in any order
    a = obs(Source.RTSP, server="H264DVR 1.0")  # xm-rtsp-server, medium
    b = obs(Source.RTSP, realm="IP Camera(L4906)")  # hik-rtsp-realm, medium
    results = {(ident(*p).maker, ident(*p).conflicts) for p in itertools.permutations([a, b])}
    assert len(results) == 1
    assert next(iter(results))[1]  # and the disagreement is on the record


def test_a_flood_of_distinct_banners_cannot_grow_the_memos_without_bound() -> None:
    for n in range(_MEMO_MAX + 100):
        ident(obs(Source.HTTP, server=f"hostile-{n}"))
    assert len(DB._match_memo) <= _MEMO_MAX
    assert ident(obs(Source.RTSP, server="Dahua Rtsp Server")).maker == "Dahua"

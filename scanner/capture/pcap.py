"""Read pcap and pcapng files frame by frame, for `scanner import-pcap`.

Formats: libpcap's classic file (both byte orders, microsecond and
nanosecond magic; pcap-savefile(5)) and pcapng (draft-ietf-opsawg-pcapng:
section header, interface description with if_tsresol/if_tsoffset,
enhanced, simple and obsolete packet blocks; other blocks are skipped).

Hostile files never raise out of `frames()` except as `CaptureError` with one
clear line, and only when nothing can be read at all (not a capture file, an
unreadable header). A file that ends mid-record, or a record whose lengths
contradict themselves, ends the read there: what came before is kept and
`ended_early` says why. Frames of unsupported link types are counted and
skipped. Memory per frame is bounded by MAX_RECORD.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from scanner.capture.decode import LINKTYPES
from scanner.errors import CaptureError

MAX_RECORD = 256 * 1024  # libpcap's own MAXIMUM_SNAPLEN is 262144
MAX_BLOCK = 16 * 1024 * 1024  # a pcapng block larger than this is corruption, not data
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_EPB, _SPB, _OPB, _IDB, _SHB = 6, 3, 2, 1, 0x0A0D0D0A
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14


class CaptureFile:
    """One capture file; iterate `frames()` for (frame, linktype, timestamp)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self.skipped: Counter[str] = Counter()
        self.ended_early: str | None = None
        self.format = "?"

    def frames(self) -> Iterator[tuple[bytes, int, float]]:
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        with fh:
            magic = fh.read(4)
            if magic in _PCAP_MAGIC:
                self.format = "pcap"
                yield from self._pcap(fh, magic)
            elif magic == _PCAPNG_SHB:
                self.format = "pcapng"
                yield from self._pcapng(fh, magic)
            else:
                raise CaptureError(
                    f"{self.path}: not a pcap or pcapng file "
                    f"(starts with {magic.hex() or 'nothing'})"
                )

    def _stop(self, why: str) -> None:
        self.ended_early = f"{why} after {self.records} packets"

    # ------------------------------------------------------------------ pcap

    def _pcap(self, fh: BinaryIO, magic: bytes) -> Iterator[tuple[bytes, int, float]]:
        order, unit = _PCAP_MAGIC[magic]
        head = fh.read(20)
        if len(head) != 20:
            raise CaptureError(f"{self.path}: pcap header cut short")
        _maj, _min, _zone, _sig, _snap, network = struct.unpack(order + "HHiIII", head)
        linktype = network & 0xFFFF
        supported = linktype in LINKTYPES
        rec = struct.Struct(order + "IIII")
        while True:
            hdr = fh.read(16)
            if not hdr:
                return
            if len(hdr) != 16:
                self._stop("file ends inside a record header")
                return
            sec, frac, incl, _orig = rec.unpack(hdr)
            if incl > MAX_RECORD:
                self._stop(f"record of {incl} bytes (corrupt length)")
                return
            data = fh.read(incl)
            if len(data) != incl:
                self._stop("file ends mid-record")
                return
            self.records += 1
            if not supported:
                self.skipped[f"linktype {linktype}"] += 1
                continue
            yield data, linktype, sec + frac * unit

    # ---------------------------------------------------------------- pcapng

    def _pcapng(self, fh: BinaryIO, first: bytes) -> Iterator[tuple[bytes, int, float]]:
        order = "<"
        ifaces: list[tuple[int, float, float]] = []  # linktype, tick seconds, offset
        block_type = first
        while True:
            lens = fh.read(4)
            if len(lens) != 4:
                if block_type:
                    self._stop("file ends inside a block header")
                return
            if block_type == _PCAPNG_SHB:
                bom = fh.read(4)
                if len(bom) != 4:
                    self._stop("file ends inside a section header")
                    return
                order = "<" if struct.unpack("<I", bom)[0] == _BYTE_ORDER_MAGIC else ">"
                if struct.unpack(order + "I", bom)[0] != _BYTE_ORDER_MAGIC:
                    if self.records == 0 and not ifaces:
                        raise CaptureError(f"{self.path}: pcapng section header is corrupt")
                    self._stop("corrupt section header")
                    return
                ifaces = []
                prefix = bom
            else:
                prefix = b""
            btype = struct.unpack(order + "I", block_type)[0]
            blen = struct.unpack(order + "I", lens)[0]
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                self._stop(f"block of {blen} bytes (corrupt length)")
                return
            body = prefix + fh.read(blen - 12 - len(prefix))
            trailer = fh.read(4)
            if len(body) != blen - 12 or len(trailer) != 4:
                self._stop("file ends mid-block")
                return
            if struct.unpack(order + "I", trailer)[0] != blen:
                self._stop("block length and trailer disagree")
                return
            if btype == _IDB:
                ifaces.append(_interface(body, order))
            elif btype in (_EPB, _SPB, _OPB):
                got = self._packet(btype, body, order, ifaces)
                if got is None:
                    if self.ended_early:
                        return
                else:
                    yield got
            block_type = fh.read(4)
            if not block_type:
                return
            if len(block_type) != 4:
                self._stop("file ends inside a block header")
                return

    def _packet(
        self, btype: int, body: bytes, order: str, ifaces: list[tuple[int, float, float]]
    ) -> tuple[bytes, int, float] | None:
        if btype == _SPB:
            if len(body) < 4:
                self._stop("simple packet block cut short")
                return None
            orig = struct.unpack_from(order + "I", body, 0)[0]
            iface, ts_raw, data = 0, None, body[4 : 4 + min(orig, len(body) - 4)]
        else:
            fmt = order + ("IIIII" if btype == _EPB else "HHIIII")
            need = struct.calcsize(fmt)
            if len(body) < need:
                self._stop("packet block cut short")
                return None
            fields = struct.unpack_from(fmt, body, 0)
            if btype == _EPB:
                iface, hi, lo, caplen, _orig = fields
            else:
                iface, _drops, hi, lo, caplen, _orig = fields
            if caplen > len(body) - need or caplen > MAX_RECORD:
                self._stop("packet longer than its block")
                return None
            ts_raw, data = (hi << 32) | lo, body[need : need + caplen]
        self.records += 1
        if iface >= len(ifaces):
            self.skipped["no interface description"] += 1
            return None
        linktype, tick, offset = ifaces[iface]
        if linktype not in LINKTYPES:
            self.skipped[f"linktype {linktype}"] += 1
            return None
        ts = offset + (ts_raw * tick if ts_raw is not None else 0.0)
        return data, linktype, ts


def _interface(body: bytes, order: str) -> tuple[int, float, float]:
    """(linktype, seconds per timestamp tick, offset) of an interface description block."""
    if len(body) < 8:
        return -1, 1e-6, 0.0
    linktype = struct.unpack_from(order + "H", body, 0)[0]
    tick, offset = 1e-6, 0.0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        value = body[pos + 4 : pos + 4 + length]
        if code == 0 or len(value) != length:
            break
        if code == _OPT_TSRESOL and length == 1:
            v = value[0]
            exp = v & 0x7F
            if exp <= 64:
                tick = 2.0**-exp if v & 0x80 else 10.0**-exp
        elif code == _OPT_TSOFFSET and length == 8:
            offset = float(struct.unpack(order + "q", value)[0])
        pos += 4 + length + (-length % 4)
    return linktype, tick, offset

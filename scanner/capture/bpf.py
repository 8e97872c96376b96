"""A classic BPF program that keeps only IPv4 packets to or from given addresses.

Written here rather than compiled by libpcap (`pcap_compile`, what scapy's
`filter=` uses) so the capture needs no libpcap or tcpdump on the host and
the program is testable as data. The kernel runs it on every frame before
it is queued to the socket (SO_ATTACH_FILTER, Documentation/networking/
filter.rst), so unrelated traffic costs the daemon nothing.

Layout: Ethernet type at 12, or one 802.1Q/802.1ad tag then the type at 16
(in-band tags on SPAN ports; Linux usually strips the tag into metadata
first); the IPv4 source and destination at 26/30 from the frame start, plus
the tag. Each address test is `jeq #addr` followed by `ret #snaplen`, so
every jump is short and the program grows linearly. Past BPF_MAXINSNS the
address set is widened to covering networks (/24, then /16): the kernel
then keeps a little more, and the flow table's exact inventory check drops
the rest in user space.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

BPF_MAXINSNS = 4096  # include/uapi/linux/bpf_common.h
SO_ATTACH_FILTER = 26  # include/uapi/asm-generic/socket.h
SNAPLEN = 4096  # enough for a DNS answer or a TLS ClientHello with post-quantum key shares

# opcodes (include/uapi/linux/filter.h, bpf_common.h)
LDH_ABS = 0x28  # A = u16 at [k]
LD_IND = 0x40  # A = u32 at [X + k]
LDX_IMM = 0x01  # X = k
AND_K = 0x54  # A &= k
JEQ_K = 0x15  # pc += (A == k) ? jt : jf
JA = 0x05  # pc += k
RET_K = 0x06  # accept k bytes (0: drop)

Insn = tuple[int, int, int, int]  # code, jt, jf, k
_HEAD_LEN = 10
_PER_HOST = 4  # (jeq, ret) for source and again for destination
_PER_NET = 8  # (ld, and, jeq, ret) twice


def _head() -> list[Insn]:
    """Frame type dispatch; leaves X = offset added by a VLAN tag, jumps to the tests."""
    return [
        (LDH_ABS, 0, 0, 12),  # 0
        (JEQ_K, 5, 0, 0x0800),  # 1: IPv4 -> 7
        (JEQ_K, 1, 0, 0x8100),  # 2: 802.1Q -> 4
        (JEQ_K, 0, 2, 0x88A8),  # 3: 802.1ad -> 4, else -> 6
        (LDH_ABS, 0, 0, 16),  # 4: type after one tag
        (JEQ_K, 3, 0, 0x0800),  # 5: IPv4 -> 9, else -> 6
        (RET_K, 0, 0, 0),  # 6: drop
        (LDX_IMM, 0, 0, 0),  # 7: untagged
        (JA, 0, 0, 1),  # 8: -> 10
        (LDX_IMM, 0, 0, 4),  # 9: one tag
    ]


def cover(addresses: Iterable[IPv4Address | IPv4Network]) -> list[IPv4Network]:
    """The fewest networks the program can hold that contain every address."""
    nets = list(ipaddress.collapse_addresses(IPv4Network(a) for a in addresses))
    for prefix in (24, 16, 8, 0):
        hosts = sum(1 for n in nets if n.prefixlen == 32)
        if _HEAD_LEN + 1 + _PER_HOST * hosts + _PER_NET * (len(nets) - hosts) <= BPF_MAXINSNS:
            return nets
        nets = list(
            ipaddress.collapse_addresses(
                n if n.prefixlen <= prefix else n.supernet(new_prefix=prefix) for n in nets
            )
        )
    return nets


def build_program(
    addresses: Iterable[IPv4Address | IPv4Network], snaplen: int = SNAPLEN
) -> list[Insn]:
    """Keep IPv4 frames whose source or destination is in `addresses` (widened if need be)."""
    nets = cover(addresses)
    hosts = [n for n in nets if n.prefixlen == 32]
    wider = [n for n in nets if n.prefixlen < 32]
    prog = _head()
    for offset in (26, 30):  # IPv4 source, destination (Ethernet 14 + 12/16)
        prog.append((LD_IND, 0, 0, offset))
        for h in hosts:
            prog += [(JEQ_K, 0, 1, int(h.network_address)), (RET_K, 0, 0, snaplen)]
        for n in wider:
            prog += [
                (LD_IND, 0, 0, offset),
                (AND_K, 0, 0, int(n.netmask)),
                (JEQ_K, 0, 1, int(n.network_address)),
                (RET_K, 0, 0, snaplen),
            ]
    prog.append((RET_K, 0, 0, 0))
    if len(prog) > BPF_MAXINSNS:  # cover() keeps it under; this is the backstop
        raise ValueError(f"BPF program of {len(prog)} instructions exceeds {BPF_MAXINSNS}")
    return prog


def run(prog: list[Insn], frame: bytes) -> int:
    """Interpret the program on one frame: what the kernel would keep (for tests)."""
    a = x = 0
    pc = 0
    while pc < len(prog):
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == LDH_ABS:
            if k + 2 > len(frame):
                return 0
            a = int.from_bytes(frame[k : k + 2], "big")
        elif code == LD_IND:
            if x + k + 4 > len(frame):
                return 0
            a = int.from_bytes(frame[x + k : x + k + 4], "big")
        elif code == LDX_IMM:
            x = k
        elif code == AND_K:
            a &= k
        elif code == JEQ_K:
            pc += jt if a == k else jf
        elif code == JA:
            pc += k
        elif code == RET_K:
            return min(k, len(frame))
        else:
            raise ValueError(f"opcode {code:#x} not in this interpreter")
    return 0


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """SO_ATTACH_FILTER the program to a packet socket (needs only the socket)."""
    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

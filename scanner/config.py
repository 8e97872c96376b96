"""Configuration: one TOML file, validated key by key, overridden by flags.

Every error names the file, the key and what is wrong, because the person
reading it is editing `/etc/scanner/scanner.toml` over SSH at 2 a.m.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.checks import each, whole
from scanner.errors import ConfigError, ScopeError

if TYPE_CHECKING:
    from scanner.alerts.settings import EmailSettings
    from scanner.capture.settings import CaptureSettings
    from scanner.daemon import DaemonSettings

DEFAULT_CONFIG = Path("/etc/scanner/scanner.toml")
DEFAULT_DB = Path("/var/lib/scanner/scanner.db")

PROTOCOLS = ("arp", "wsd", "onvif", "mdns", "ssdp", "sadp", "dhip", "xmeye", "http", "tls", "rtsp")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")  # IFNAMSIZ is 16 with the NUL
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where the scanner may send packets; nothing outside it is ever probed."""

    interfaces: tuple[str, ...] = ()
    cidrs: tuple[IPv4Network, ...] = ()
    exclude: tuple[IPv4Network, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.interfaces or not self.cidrs

    def contains(self, ip: str | IPv4Address) -> bool:
        try:
            addr = IPv4Address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.cidrs) and not any(addr in n for n in self.exclude)

    def targets(self) -> Iterator[IPv4Address]:
        """Every probe-able host address in scope, each once, in order."""
        seen: set[IPv4Address] = set()
        for net in self.cidrs:
            hosts = net.hosts() if net.prefixlen < 31 else iter(net)
            for addr in hosts:
                if addr not in seen and not any(addr in n for n in self.exclude):
                    seen.add(addr)
                    yield addr

    def size(self) -> int:
        return sum(1 for _ in self.targets())


@dataclass(frozen=True, slots=True)
class ScanSettings:
    rate: int = 1000  # packets per second, whole scan
    per_host_packets: int = 40  # budget per target per scan
    arp_timeout: float = 0.5  # seconds to wait for replies after the last request (arp-scan: 0.5)
    arp_retries: int = 1  # extra rounds for addresses that stayed silent
    timeout: float = 2.0  # seconds to wait for replies to each discovery probe
    protocols: tuple[str, ...] = PROTOCOLS  # which sources a scan uses


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None = None
    scope: Scope = field(default_factory=Scope)
    db: Path = DEFAULT_DB
    home_country: str = "GB"
    scan: ScanSettings = field(default_factory=ScanSettings)
    credentials_file: Path | None = None
    exceptions_file: Path | None = None
    flag_policies: tuple[str, ...] | None = None  # None: every policy in fingerprints/
    email: EmailSettings | None = None  # [alerts.email]; None: no mail is sent
    daemon: DaemonSettings = field(default_factory=lambda: _daemon_settings({}, "<defaults>"))
    capture: CaptureSettings | None = None  # [capture]; None: no outbound watch

    def require_scope(self) -> Scope:
        """The scope, or a refusal: no scope means no scan, never "scan everything"."""
        missing = [
            name
            for name, value in (
                ("interfaces", self.scope.interfaces),
                ("cidrs", self.scope.cidrs),
            )
            if not value
        ]
        if missing:
            raise ScopeError(
                "refusing to scan: no scope "
                f"({' and '.join(missing)} missing); give [scope] in the config "
                "or --interface and --cidr"
            )
        return self.scope


# ---------------------------------------------------------------- validation

_Check = Callable[[str, Any], Any]


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty string")
    return v


def _keyless(check: Callable[[Any], Any]) -> _Check:
    return lambda _key, v: check(v)


def _pos_int(maximum: int) -> _Check:
    return _keyless(whole(1, maximum))


def _nonneg_int(maximum: int) -> _Check:
    return _keyless(whole(0, maximum))


def _seconds(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 600:
        raise ValueError("must be a number of seconds above 0 and at most 600")
    return float(v)


def _country(key: str, v: Any) -> str:
    if not isinstance(v, str) or not _COUNTRY.match(v):
        raise ValueError("must be an ISO 3166 alpha-2 code such as 'GB'")
    return v


def _path(key: str, v: Any) -> Path:
    return Path(_str(key, v))


def _policy_id(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[a-z0-9-]{1,40}", v):
        raise ValueError(f"{v!r} is not a policy id (see fingerprints/policies.toml)")
    return v


def _protocol(v: Any) -> str:
    if v not in PROTOCOLS:
        raise ValueError(f"{v!r} is not one of {', '.join(PROTOCOLS)}")
    return str(v)


def parse_interface(v: Any) -> str:
    if not isinstance(v, str) or not _IFNAME.match(v):
        raise ValueError(f"{v!r} is not an interface name")
    return v


def parse_cidr(v: Any) -> IPv4Network:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a CIDR string")
    try:
        net = ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise ValueError(f"{v!r} is not a valid CIDR") from None
    if net.version != 4:
        raise ValueError(f"{v!r}: only IPv4 scopes are supported")
    if "/" in v and IPv4Address(v.split("/")[0]) != net.network_address:
        raise ValueError(f"{v!r} has host bits set; did you mean {net}?")
    if net.prefixlen < 16:
        raise ValueError(f"{v!r} is wider than /16; split it into smaller scopes")
    if net.is_loopback or net.is_multicast or net.is_unspecified:
        raise ValueError(f"{v!r} is not a network with hosts to scan")
    assert isinstance(net, IPv4Network)
    return net


def _list_of(item: Callable[[Any], Any]) -> _Check:
    return _keyless(each(item))


# section -> key -> check; the example config documents every key listed here
SCHEMA: dict[str, dict[str, _Check]] = {
    "scope": {
        "interfaces": _list_of(parse_interface),
        "cidrs": _list_of(parse_cidr),
        "exclude": _list_of(parse_cidr),
    },
    "scan": {
        "rate": _pos_int(1000),
        "per_host_packets": _pos_int(40),
        "arp_timeout": _seconds,
        "arp_retries": _nonneg_int(5),
        "timeout": _seconds,
        "protocols": _list_of(_protocol),
    },
    "onvif": {"credentials_file": _path},
    "store": {"db": _path},
    "policy": {
        "home_country": _country,
        "exceptions_file": _path,
        "flag_policies": _list_of(_policy_id),
    },
}


# sections whose tables nest or cross-check keys validate themselves
NESTED = ("alerts", "daemon", "capture")


def _daemon_settings(body: Mapping[str, Any], where: str) -> DaemonSettings:
    from scanner.daemon import DaemonSettings

    return DaemonSettings.from_dict(dict(body), where)


def _email_settings(body: Any, where: str) -> EmailSettings | None:
    from scanner.alerts.settings import alerts_from_dict

    return alerts_from_dict(body, where)


def _capture_settings(body: Any, where: str) -> CaptureSettings:
    from scanner.capture.settings import CaptureSettings

    if not isinstance(body, dict):
        raise ConfigError(f"{where}: [capture] must be a table")
    return CaptureSettings.from_dict(body, where)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _validate(raw: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, body in raw.items():
        if section in NESTED:
            continue
        if section not in SCHEMA:
            known = [*SCHEMA, *NESTED]
            raise ConfigError(f"{where}: unknown section [{section}]{_suggest(section, known)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in body.items():
            checks = SCHEMA[section]
            if key not in checks:
                raise ConfigError(
                    f"{where}: unknown key {section}.{key}{_suggest(key, list(checks))}"
                )
            try:
                out.setdefault(section, {})[key] = checks[key](key, value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {section}.{key}: {exc}") from None
    return out


def parse_config(text: str, where: str = "<config>") -> Config:
    """Pure: TOML text to a validated Config."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    v = _validate(raw, where)
    scope = v.get("scope", {})
    cfg = Config(
        scope=Scope(
            interfaces=scope.get("interfaces", ()),
            cidrs=scope.get("cidrs", ()),
            exclude=scope.get("exclude", ()),
        ),
        db=v.get("store", {}).get("db", DEFAULT_DB),
        home_country=v.get("policy", {}).get("home_country", "GB"),
        scan=ScanSettings(**v.get("scan", {})),
        credentials_file=v.get("onvif", {}).get("credentials_file"),
        exceptions_file=v.get("policy", {}).get("exceptions_file"),
        flag_policies=v.get("policy", {}).get("flag_policies"),
        email=_email_settings(raw["alerts"], where) if "alerts" in raw else None,
        daemon=_daemon_settings(raw.get("daemon", {}), where),
        capture=_capture_settings(raw["capture"], where) if "capture" in raw else None,
    )
    return cfg


def load_config(path: Path | None) -> Config:
    """Read the config file; an absent default file means built-in defaults.

    An explicitly named file that cannot be read is an error: silently falling
    back to defaults would scan with a scope the operator did not write.
    """
    explicit = path is not None
    target = path or DEFAULT_CONFIG
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{target}: no such config file") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{target}: cannot read config: {exc}") from None
    return replace(parse_config(text, str(target)), path=target)


def with_overrides(
    cfg: Config,
    *,
    interfaces: Sequence[str] = (),
    cidrs: Sequence[str] = (),
    db: Path | None = None,
) -> Config:
    """Apply command-line flags; each given flag replaces its config value."""
    scope = cfg.scope
    if interfaces:
        try:
            scope = replace(scope, interfaces=tuple(parse_interface(i) for i in interfaces))
        except ValueError as exc:
            raise ScopeError(f"--interface: {exc}") from None
    if cidrs:
        try:
            scope = replace(scope, cidrs=tuple(parse_cidr(c) for c in cidrs))
        except ValueError as exc:
            raise ScopeError(f"--cidr: {exc}") from None
    return replace(cfg, scope=scope, db=db or cfg.db)

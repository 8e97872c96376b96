"""The one module that speaks SQL.

SQLite in WAL mode through sqlite-utils; the schema grows by versioned
migrations. A scan's writes go in one transaction, so a crash (or SIGKILL)
mid-write leaves the previous complete state and nothing half-written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from scanner.errors import StoreError
from scanner.model import CONNECTION_KEYS, Assessment, Identification, Observation, iso

migrations = Migrations("scanner")


@migrations()
def m001_initial(db: Database) -> None:
    """The foundation schema: scans, devices with IP history, evidence, outbox."""
    db.execute(
        """CREATE TABLE scans (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            status TEXT NOT NULL,
            interfaces TEXT NOT NULL,
            cidrs TEXT NOT NULL,
            devices_seen INTEGER NOT NULL,
            observations INTEGER NOT NULL,
            scanner_version TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            mac TEXT,
            ip TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            last_scan_id INTEGER REFERENCES scans(id),
            vendor TEXT, maker TEXT, model TEXT, firmware TEXT, serial TEXT,
            origin_country TEXT,
            registrant TEXT,
            registrant_country TEXT,
            confidence TEXT,
            randomised_mac INTEGER NOT NULL DEFAULT 0,
            verdict TEXT NOT NULL,
            flagged INTEGER NOT NULL DEFAULT 0,
            accepted_risk INTEGER NOT NULL DEFAULT 0,
            reasons TEXT NOT NULL DEFAULT '[]',
            evidence TEXT NOT NULL DEFAULT '[]',
            sources TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    db.execute("CREATE UNIQUE INDEX devices_mac ON devices(mac) WHERE mac IS NOT NULL")
    db.execute(
        """CREATE TABLE device_ips (
            device_id TEXT NOT NULL REFERENCES devices(id),
            ip TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (device_id, ip)
        )"""
    )
    db.execute(
        """CREATE TABLE observations (
            id INTEGER PRIMARY KEY,
            scan_id INTEGER NOT NULL REFERENCES scans(id),
            device_id TEXT REFERENCES devices(id),
            source TEXT NOT NULL,
            ip TEXT NOT NULL,
            mac TEXT,
            seen_at TEXT NOT NULL,
            attrs TEXT NOT NULL DEFAULT '{}',
            error TEXT
        )"""
    )
    db.execute("CREATE INDEX observations_scan ON observations(scan_id)")
    db.execute("CREATE INDEX observations_device ON observations(device_id)")
    db.execute(
        """CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            device_id TEXT REFERENCES devices(id),
            kind TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            scan_id INTEGER REFERENCES scans(id),
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute(
        """CREATE TABLE connections (
            id INTEGER PRIMARY KEY,
            device_mac TEXT,
            device_ip TEXT NOT NULL,
            dst_ip TEXT NOT NULL,
            dst_port INTEGER,
            proto TEXT NOT NULL,
            dst_name TEXT,
            dst_country TEXT,
            class TEXT NOT NULL,
            vendor TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            packets INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            UNIQUE (device_ip, dst_ip, dst_port, proto)
        )"""
    )
    db.execute(
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            finding_id INTEGER REFERENCES findings(id),
            created_at TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            sent_at TEXT,
            last_error TEXT
        )"""
    )


@migrations()
def m002_identities(db: Database) -> None:
    """Routed devices are known by serial or UUID until a MAC turns up."""
    db.execute("ALTER TABLE devices ADD COLUMN uuid TEXT")
    db.execute("ALTER TABLE devices ADD COLUMN conflicts TEXT NOT NULL DEFAULT '[]'")
    db.execute("CREATE INDEX devices_serial ON devices(serial)")
    db.execute("CREATE INDEX devices_uuid ON devices(uuid)")


@migrations()
def m004_alerts_outbox(db: Database) -> None:
    """The alert outbox: kinds, bundles (summary, digest, overflow) and an HTML part.

    status: queued (waits for a digest) -> pending (to send; next_attempt_at is
    the back-off) -> sending (claimed; next_attempt_at is the claim's lease)
    -> sent. bundled: carried by the mail `parent_id`, which is sent instead.
    """
    db.execute("ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'finding'")
    db.execute("ALTER TABLE alerts ADD COLUMN html TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE alerts ADD COLUMN parent_id INTEGER REFERENCES alerts(id)")
    db.execute("CREATE INDEX alerts_status ON alerts(status, next_attempt_at)")
    db.execute("CREATE INDEX alerts_parent ON alerts(parent_id)")
    db.execute("CREATE INDEX findings_device ON findings(device_id)")


@dataclass(slots=True)
class DeviceRecord:
    """One merged device of a scan, with what matching and policy made of it."""

    key: str
    ip: str
    mac: str | None
    identification: Identification
    assessment: Assessment
    sources: Sequence[str]
    observations: Sequence[Observation] = field(default_factory=list)
    uuid: str | None = None


@dataclass(slots=True)
class ScanRecord:
    started_at: str
    finished_at: str
    interfaces: Sequence[str]
    cidrs: Sequence[str]
    devices: Sequence[DeviceRecord]
    scanner_version: str
    # observations that could not be tied to any device (errors, out-of-band)
    stray: Sequence[Observation] = field(default_factory=list)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class Store:
    """An open scanner database."""

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Store:
        """Open (and migrate) the database; errors become one clear StoreError line."""
        if not create and not path.exists():
            raise StoreError(f"{path}: no database here (run `scanner scan --once` first)")
        if path.is_dir():
            raise StoreError(f"{path}: is a directory, not a database file")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            conn = sqlite3.connect(str(path), timeout=30)
            db = Database(conn)
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 30000")
            if db.journal_mode != "wal":
                db.enable_wal()
            db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL is crash-safe
            migrations.apply(db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from None
        return cls(db, path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        try:
            with self.db.atomic():
                yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed, nothing was saved: {exc}") from None

    # ------------------------------------------------------------------ writes

    def record_scan(self, scan: ScanRecord, *, findings_for: FindingsHook | None = None) -> int:
        """Write one complete scan in one transaction; returns the scan id.

        `findings_for(store, scan_id, scan, changes)` runs inside the same
        transaction, `changes` pairing each device's row from before the scan
        (None: never seen) with its record, so a scan is never recorded without
        its findings and alerts, nor they without it.
        """
        with self._tx():
            cur = self.db.execute(
                """INSERT INTO scans (started_at, finished_at, status, interfaces, cidrs,
                       devices_seen, observations, scanner_version)
                   VALUES (?, ?, 'complete', ?, ?, ?, ?, ?)""",
                [
                    scan.started_at,
                    scan.finished_at,
                    _dumps(list(scan.interfaces)),
                    _dumps(list(scan.cidrs)),
                    len(scan.devices),
                    sum(len(d.observations) for d in scan.devices) + len(scan.stray),
                    scan.scanner_version,
                ],
            )
            scan_id = int(cur.lastrowid or 0)
            changes: list[tuple[dict[str, Any] | None, DeviceRecord]] = []
            for dev in scan.devices:
                before = self._device_row(self._existing_id(dev)) if findings_for else None
                self._upsert_device(scan_id, scan.finished_at, dev)
                changes.append((before, dev))
            self._insert_observations(scan_id, None, scan.stray)
            if findings_for is not None:
                findings_for(self, scan_id, scan, changes)
        return scan_id

    def _existing_id(self, dev: DeviceRecord) -> str:
        """The stored identity of this device: by MAC, serial, UUID, then IP."""
        ident = dev.identification
        probes: list[tuple[str, list[Any]]] = []
        if dev.mac:
            probes.append(("mac = ?", [dev.mac]))
        if ident.serial:
            probes.append(("serial = ? AND (mac IS NULL OR mac = ?)", [ident.serial, dev.mac]))
        if dev.uuid:
            probes.append(("uuid = ? AND (mac IS NULL OR mac = ?)", [dev.uuid, dev.mac]))
        probes.append(("id = ?", [dev.key]))
        for where, params in probes:
            sql = "SELECT id FROM devices WHERE " + where  # noqa: S608 (fixed clauses above)
            row = next(iter(self.db.query(sql, params)), None)
            if row is not None:
                return str(row["id"])
        return dev.key

    def _upsert_device(self, scan_id: int, now: str, dev: DeviceRecord) -> None:
        ident, verdict = dev.identification, dev.assessment
        dev.key = self._existing_id(dev)
        self.db.execute(
            """INSERT INTO devices (id, mac, ip, first_seen, last_seen, last_scan_id,
                   vendor, maker, model, firmware, serial, origin_country, registrant,
                   registrant_country, confidence,
                   randomised_mac, verdict, flagged, accepted_risk, reasons, evidence, sources,
                   uuid, conflicts)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET
                   mac = coalesce(excluded.mac, mac), ip = excluded.ip,
                   last_seen = excluded.last_seen,
                   last_scan_id = excluded.last_scan_id,
                   vendor = excluded.vendor, maker = excluded.maker, model = excluded.model,
                   firmware = excluded.firmware, serial = excluded.serial,
                   origin_country = excluded.origin_country,
                   registrant = excluded.registrant,
                   registrant_country = excluded.registrant_country,
                   confidence = excluded.confidence, randomised_mac = excluded.randomised_mac,
                   verdict = excluded.verdict, flagged = excluded.flagged,
                   accepted_risk = excluded.accepted_risk, reasons = excluded.reasons,
                   evidence = excluded.evidence, sources = excluded.sources,
                   uuid = coalesce(excluded.uuid, uuid), conflicts = excluded.conflicts""",
            [
                dev.key,
                dev.mac,
                dev.ip,
                now,
                now,
                scan_id,
                ident.vendor,
                ident.maker,
                ident.model,
                ident.firmware,
                ident.serial,
                ident.origin_country,
                ident.registrant,
                ident.registrant_country,
                ident.confidence,
                int(ident.randomised_mac),
                str(verdict.verdict),
                int(verdict.flagged),
                int(verdict.accepted_risk),
                _dumps(list(verdict.reasons)),
                _dumps(
                    [
                        {"source": e.source, "field": e.field, "value": e.value, "rule": e.rule}
                        for e in ident.evidence
                    ]
                ),
                _dumps(sorted(dev.sources)),
                dev.uuid,
                _dumps(list(ident.conflicts)),
            ],
        )
        self.db.execute(
            """INSERT INTO device_ips (device_id, ip, first_seen, last_seen) VALUES (?, ?, ?, ?)
               ON CONFLICT(device_id, ip) DO UPDATE SET last_seen = excluded.last_seen""",
            [dev.key, dev.ip, now, now],
        )
        self._insert_observations(scan_id, dev.key, dev.observations)

    def _insert_observations(
        self, scan_id: int, device_id: str | None, observations: Sequence[Observation]
    ) -> None:
        self.db.conn.executemany(
            """INSERT INTO observations (scan_id, device_id, source, ip, mac, seen_at, attrs, error)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (
                    scan_id,
                    device_id,
                    str(o.source),
                    o.ip,
                    o.mac,
                    iso(o.seen_at),
                    _dumps(dict(o.attrs)),
                    o.error,
                )
                for o in observations
            ],
        )

    def upsert_connections(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge one capture's flows into `connections`, in one transaction.

        Each row has the report's CONNECTION_KEYS. A flow already stored
        (same device_ip, dst_ip, dst_port, proto; a NULL port matches NULL)
        widens its first/last_seen, adds its packets and bytes, keeps a known
        name or country when this window had none, and takes the new class
        and vendor. Returns the rows that were not stored before.
        """
        new: list[dict[str, Any]] = []
        with self._tx():
            for r in rows:
                old = next(
                    iter(
                        self.db.query(
                            "SELECT id FROM connections WHERE device_ip = ? AND dst_ip = ? "
                            "AND dst_port IS ? AND proto = ?",
                            [r["device_ip"], r["dst_ip"], r["dst_port"], r["proto"]],
                        )
                    ),
                    None,
                )
                if old is None:
                    self.db.execute(
                        """INSERT INTO connections (device_mac, device_ip, dst_ip, dst_port,
                               proto, dst_name, dst_country, class, vendor, first_seen,
                               last_seen, packets, bytes)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        [r[k] for k in CONNECTION_KEYS],  # the columns above, in this order
                    )
                    new.append(dict(r))
                    continue
                self.db.execute(
                    """UPDATE connections SET
                           device_mac = coalesce(?, device_mac),
                           dst_name = coalesce(?, dst_name),
                           dst_country = coalesce(?, dst_country),
                           class = ?, vendor = ?,
                           first_seen = min(first_seen, ?), last_seen = max(last_seen, ?),
                           packets = packets + ?, bytes = bytes + ?
                       WHERE id = ?""",
                    [
                        r["device_mac"],
                        r["dst_name"],
                        r["dst_country"],
                        r["class"],
                        r["vendor"],
                        r["first_seen"],
                        r["last_seen"],
                        r["packets"],
                        r["bytes"],
                        old["id"],
                    ],
                )
        return new

    # ------------------------------------------------------------------- reads

    def scans(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM scans ORDER BY id")
        out = []
        for r in rows:
            r["interfaces"] = json.loads(r["interfaces"])
            r["cidrs"] = json.loads(r["cidrs"])
            out.append(r)
        return out

    def devices(self) -> list[dict[str, Any]]:
        out = []
        for r in self.db.query("SELECT * FROM devices ORDER BY ip, id"):
            for key in ("reasons", "evidence", "sources", "conflicts"):
                r[key] = json.loads(r[key])
            for key in ("flagged", "randomised_mac", "accepted_risk"):
                r[key] = bool(r[key])
            r["ip_history"] = list(
                self.db.query(
                    "SELECT ip, first_seen, last_seen FROM device_ips WHERE device_id = ? "
                    "ORDER BY first_seen, ip",
                    [r["id"]],
                )
            )
            out.append(r)
        return out

    def connections(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM connections ORDER BY device_ip, dst_ip"))

    def observations(self, scan_id: int | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM observations", []
        if scan_id is not None:
            sql, params = sql + " WHERE scan_id = ?", [scan_id]
        rows = list(self.db.query(sql + " ORDER BY id", params))
        for r in rows:
            r["attrs"] = json.loads(r["attrs"])
        return rows

    def integrity_ok(self) -> bool:
        return [tuple(r.values()) for r in self.db.query("PRAGMA integrity_check")] == [("ok",)]

    # ------------------------------------------------ findings and alert outbox

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes as one: all of them or none (nests)."""
        with self._tx():
            yield

    def finding_keys(self, kind: str) -> set[str]:
        return {r["key"] for r in self.db.query("SELECT key FROM findings WHERE kind = ?", [kind])}

    def _device_row(self, device_id: str) -> dict[str, Any] | None:
        return next(iter(self.db.query("SELECT * FROM devices WHERE id = ?", [device_id])), None)

    def scans_between(self, after_id: int | None, before_id: int) -> list[dict[str, Any]]:
        """Scans with after_id < id < before_id, cidrs decoded: who could have seen a device."""
        rows = self.db.query(
            "SELECT id, finished_at, cidrs FROM scans WHERE id > ? AND id < ? ORDER BY id",
            [after_id or 0, before_id],
        )
        return [{**r, "cidrs": json.loads(r["cidrs"])} for r in rows]

    def add_finding(
        self,
        *,
        scan_id: int | None,
        kind: str,
        key: str,
        device_id: str | None,
        detail: Any,
        now: str,
    ) -> int | None:
        """Record a finding: its id when the key is new, None when it was known already."""
        with self._tx():
            cur = self.db.execute(
                """INSERT INTO findings
                       (key, device_id, kind, first_seen, last_seen, scan_id, detail)
                   VALUES (?, (SELECT id FROM devices WHERE id = ?), ?, ?, ?, ?, ?)
                   ON CONFLICT(key) DO NOTHING""",
                [key, device_id, kind, now, now, scan_id, _dumps(detail)],
            )
            if cur.rowcount == 1:
                return int(cur.lastrowid or 0)
            self.db.execute("UPDATE findings SET last_seen = ? WHERE key = ?", [now, key])
        return None

    def findings(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM findings", []
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", [kind]
        rows = list(self.db.query(sql + " ORDER BY id", params))
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return rows

    def add_alert(
        self,
        *,
        kind: str,
        subject: str,
        body: str,
        html: str,
        created_at: str,
        status: str = "pending",
        finding_id: int | None = None,
    ) -> int:
        with self._tx():
            cur = self.db.execute(
                """INSERT INTO alerts (finding_id, created_at, subject, body, html, status, kind)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [finding_id, created_at, subject, body, html, status, kind],
            )
        return int(cur.lastrowid or 0)

    def alerts(
        self,
        *,
        status: str | None = None,
        parent_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Outbox rows, newest first (oldest first for one bundle's children)."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        sql = "SELECT * FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)  # fixed clauses, values are parameters
        sql += " ORDER BY id" + ("" if parent_id is not None else " DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return list(self.db.query(sql, params))

    def due_alerts(self, now: str) -> list[dict[str, Any]]:
        """Mails to send now: pending past their back-off, or claims whose lease ran out."""
        return list(
            self.db.query(
                """SELECT * FROM alerts
                   WHERE (status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?))
                      OR (status = 'sending' AND next_attempt_at <= ?)
                   ORDER BY id""",
                [now, now],
            )
        )

    def claim_alert(self, alert_id: int, now: str, lease_until: str) -> bool:
        """Take a due mail for sending (one sender wins); counts the attempt."""
        with self._tx():
            cur = self.db.execute(
                """UPDATE alerts SET status = 'sending', attempts = attempts + 1,
                       next_attempt_at = ?
                   WHERE id = ? AND ((status = 'pending'
                         AND (next_attempt_at IS NULL OR next_attempt_at <= ?))
                      OR (status = 'sending' AND next_attempt_at <= ?))""",
                [lease_until, alert_id, now, now],
            )
        return cur.rowcount == 1

    def alert_sent(self, alert_id: int, at: str) -> None:
        with self._tx():
            self.db.execute(
                """UPDATE alerts SET status = 'sent', sent_at = ?, next_attempt_at = NULL,
                       last_error = NULL WHERE id = ?""",
                [at, alert_id],
            )

    def alert_failed(
        self, alert_id: int, error: str, retry_at: str, *, count_attempt: bool = False
    ) -> None:
        """Back to pending until `retry_at`; `count_attempt` for a mail never claimed."""
        with self._tx():
            self.db.execute(
                """UPDATE alerts SET status = 'pending', next_attempt_at = ?, last_error = ?,
                       attempts = attempts + ?
                   WHERE id = ? AND status IN ('pending', 'sending')""",
                [retry_at, error[:500], int(count_attempt), alert_id],
            )

    def retry_alerts_now(self) -> int:
        """Drop every back-off (the mail server is back); returns how many wait."""
        with self._tx():
            cur = self.db.execute(
                "UPDATE alerts SET next_attempt_at = NULL WHERE status = 'pending'"
            )
        return int(cur.rowcount)

    def bundle_alerts(
        self,
        child_ids: Sequence[int],
        *,
        kind: str,
        subject: str,
        body: str,
        html: str,
        created_at: str,
        from_status: str,
    ) -> int:
        """One mail carrying `child_ids` (all still in `from_status`), in one transaction."""
        with self._tx():
            parent = self.add_alert(
                kind=kind, subject=subject, body=body, html=html, created_at=created_at
            )
            marks = ",".join("?" * len(child_ids))
            cur = self.db.execute(
                f"""UPDATE alerts SET status = 'bundled', parent_id = ?, next_attempt_at = NULL
                    WHERE status = ? AND id IN ({marks})""",  # noqa: S608 (placeholders only)
                [parent, from_status, *child_ids],
            )
            if cur.rowcount != len(child_ids):
                raise sqlite3.OperationalError("outbox changed while bundling; try again")
        return parent

    def mails_sent_since(self, since: str) -> int:
        """Mails (test mails aside) the server accepted at or after `since`."""
        row = next(
            iter(
                self.db.query(
                    "SELECT count(*) AS n FROM alerts "
                    "WHERE status = 'sent' AND kind != 'test' AND sent_at >= ?",
                    [since],
                )
            )
        )
        return int(row["n"])

    def last_alert_created(self, kind: str) -> str | None:
        row = next(
            iter(self.db.query("SELECT max(created_at) AS t FROM alerts WHERE kind = ?", [kind]))
        )
        return None if row["t"] is None else str(row["t"])

    def prune(self, before: str) -> dict[str, int]:
        """Retention: drop observations and delivered alerts older than `before`.

        Devices, their IP history, findings (the dedupe memory) and scans stay:
        forgetting a finding would alert on it again.
        """
        removed = {"observations": 0, "alerts": 0}
        with self._tx():
            cur = self.db.execute("DELETE FROM observations WHERE seen_at < ?", [before])
            removed["observations"] = cur.rowcount
            while True:  # leaves first: a bundle goes once no child points at it
                cur = self.db.execute(
                    """DELETE FROM alerts WHERE created_at < ? AND status IN ('sent', 'bundled')
                       AND id NOT IN (SELECT parent_id FROM alerts WHERE parent_id IS NOT NULL)
                       AND (parent_id IS NULL OR parent_id IN
                            (SELECT id FROM alerts WHERE status IN ('sent', 'bundled')))""",
                    [before],
                )
                removed["alerts"] += cur.rowcount
                if cur.rowcount == 0:
                    break
        return removed


FindingsHook = Callable[
    [Store, int, ScanRecord, list[tuple[dict[str, Any] | None, DeviceRecord]]], None
]

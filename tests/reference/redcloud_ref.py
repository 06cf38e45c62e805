#!/usr/bin/env python3
"""Independent reference implementation of `redcloud replay` (contract v1, sections 1-6).

Written from /work/shared/contract.md, the calendar data, docs/config.md (config format)
and the "What the contract leaves open, and what we do" paragraphs of docs/rules.md only,
without reading the Rust sources, so that tests/reference_diff.rs can cross-check the Rust
engine against it.  Standard library only (Python >= 3.11 for tomllib).

Usage:
    redcloud_ref.py replay --events FILE [--config FILE] [--until RFC3339] [--stats]

Differences from the real command that are deliberate (and not compared by the test):
notification ids are made up here, rejection reasons are free text, and the dedup
retention is unlimited (a trace is expected to be shorter than the 35 days default).
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import os
import re
import sys
import tomllib
import zoneinfo

# --------------------------------------------------------------------------------------
# Embedded data
# --------------------------------------------------------------------------------------

# Same content as config/default.toml (contract section 6: names in the embedded default).
DEFAULT_TOML = r'''
timezone = "Asia/Shanghai"

[calendar]
builtin = "cn-mainland"
files = []

[org]
levels = ["city", "county", "town", "village", "group"]

[dedup]
retention = "35d"

[offices.city]
name = "市委党建办"

[offices.county]
name = "县委党建办"

[[streak_policies]]
name = "quiz"
activity = "quiz"
cohorts = []
closes_at = "24:00"
steps = [
  { after = 1, every = 1, kind = "reminder", notify = ["self"] },
  { after = 5, every = 5, kind = "escalation", notify = ["leader", "office:city"] },
]

[[sla_policies]]
name = "tickets"
categories = ["wish", "help", "suggestion"]
resolve_within = "10d"
warn_before = ["2d"]
warn_notify = ["assignee_leader"]
steps = [
  { after = "0h", notify = ["assignee_leader"] },
  { after = "2d", notify = ["parent_leader"] },
  { after = "5d", notify = ["office:county"] },
]
'''

# The built-in cn-mainland calendar (../shared/calendar/cn-mainland-2024-2026.json).
CN_MAINLAND = {
    2024: {
        "holidays_on_weekdays": [
            "2024-01-01", "2024-02-12", "2024-02-13", "2024-02-14", "2024-02-15",
            "2024-02-16", "2024-04-04", "2024-04-05", "2024-05-01", "2024-05-02",
            "2024-05-03", "2024-06-10", "2024-09-16", "2024-09-17", "2024-10-01",
            "2024-10-02", "2024-10-03", "2024-10-04", "2024-10-07",
        ],
        "makeup_working_days": [
            "2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28", "2024-05-11",
            "2024-09-14", "2024-09-29", "2024-10-12",
        ],
    },
    2025: {
        "holidays_on_weekdays": [
            "2025-01-01", "2025-01-28", "2025-01-29", "2025-01-30", "2025-01-31",
            "2025-02-03", "2025-02-04", "2025-04-04", "2025-05-01", "2025-05-02",
            "2025-05-05", "2025-06-02", "2025-10-01", "2025-10-02", "2025-10-03",
            "2025-10-06", "2025-10-07", "2025-10-08",
        ],
        "makeup_working_days": [
            "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11",
        ],
    },
    2026: {
        "holidays_on_weekdays": [
            "2026-01-01", "2026-01-02", "2026-02-16", "2026-02-17", "2026-02-18",
            "2026-02-19", "2026-02-20", "2026-02-23", "2026-04-06", "2026-05-01",
            "2026-05-04", "2026-05-05", "2026-06-19", "2026-09-25", "2026-10-01",
            "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07",
        ],
        "makeup_working_days": [
            "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20",
            "2026-10-10",
        ],
    },
}

NS = 1_000_000_000
DAY_NS = 86_400 * NS
MAX_EVENT_BYTES = 64 * 1024
EPOCH_DATE = dt.date(1970, 1, 1)


# --------------------------------------------------------------------------------------
# Time helpers (instants are integer nanoseconds since the Unix epoch)
# --------------------------------------------------------------------------------------

RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(s: str) -> int:
    """Strict RFC 3339 timestamp with offset -> epoch nanoseconds. Raises ValueError."""
    if not isinstance(s, str):
        raise ValueError("not a string")
    m = RFC3339_RE.match(s)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {s!r}")
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7)
    off = m.group(8)
    if off in ("Z", "z"):
        off_min = 0
    else:
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            raise ValueError("bad offset")
        off_min = (oh * 60 + om) * (1 if off[0] == "+" else -1)
    leap = se == 60  # RFC 3339 allows a leap second; it is taken as the last instant of :59
    naive = dt.datetime(y, mo, d, h, mi, 59 if leap else se)  # validates the ranges
    secs = (naive - dt.datetime(1970, 1, 1)).days * 86400 + (naive - dt.datetime(1970, 1, 1)).seconds
    secs -= off_min * 60
    nanos = 0
    if frac:
        digits = frac[1:]
        nanos = int((digits + "000000000")[:9])
    if leap:
        nanos = NS - 1
    return secs * NS + nanos


def parse_duration(s: str):
    """Returns ("ns", n) for calendar time or ("wd", n) for working days."""
    if not isinstance(s, str):
        raise ValueError(f"duration must be a string: {s!r}")
    m = re.fullmatch(r"(\d+)wd", s)
    if m:
        return ("wd", int(m.group(1)))
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", s)
    if not m or s == "":
        raise ValueError(f"not a duration: {s!r}")
    d, h, mi, se, ms = (int(x) if x else 0 for x in m.groups())
    return ("ns", (((d * 24 + h) * 60 + mi) * 60 + se) * NS + ms * 1_000_000)


class Clock:
    def __init__(self, tzname: str):
        self.tz = zoneinfo.ZoneInfo(tzname)
        self._date_cache: dict[int, dt.date] = {}

    def local_dt(self, ns: int) -> dt.datetime:
        secs, rem = divmod(ns, NS)
        return dt.datetime.fromtimestamp(secs, self.tz)

    def local_date(self, ns: int) -> dt.date:
        return self.local_dt(ns).date()

    def local_to_ns(self, date: dt.date, hour: int, minute: int) -> int:
        if hour == 24:
            date = date + dt.timedelta(days=1)
            hour = 0
        local = dt.datetime(date.year, date.month, date.day, hour, minute, tzinfo=self.tz)
        return int(local.timestamp()) * NS

    def fmt(self, ns: int) -> str:
        secs, rem = divmod(ns, NS)
        local = dt.datetime.fromtimestamp(secs, self.tz)
        base = local.strftime("%Y-%m-%dT%H:%M:%S")
        if rem:
            frac = f"{rem:09d}".rstrip("0")
            base += "." + frac
        off = local.utcoffset()
        total = int(off.total_seconds()) // 60
        sign = "+" if total >= 0 else "-"
        total = abs(total)
        return f"{base}{sign}{total // 60:02d}:{total % 60:02d}"


class Calendar:
    def __init__(self, builtin: str, extra_years: dict):
        self.years: dict[int, tuple[set, set]] = {}
        if builtin == "cn-mainland":
            for y, data in CN_MAINLAND.items():
                self.years[y] = self._year(data)
        for y, data in extra_years.items():
            self.years[int(y)] = self._year(data)
        self._cache: dict[dt.date, bool] = {}

    @staticmethod
    def _year(data):
        hol = {dt.date.fromisoformat(x) for x in data.get("holidays_on_weekdays", [])}
        mk = {dt.date.fromisoformat(x) for x in data.get("makeup_working_days", [])}
        return hol, mk

    def is_working(self, d: dt.date) -> bool:
        r = self._cache.get(d)
        if r is not None:
            return r
        y = self.years.get(d.year)
        weekday = d.weekday() < 5
        if y is None:
            r = weekday
        else:
            hol, mk = y
            r = (weekday and d not in hol) or (not weekday and d in mk)
        self._cache[d] = r
        return r


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------


class StreakStep:
    def __init__(self, after, every, kind, notify):
        self.after, self.every, self.kind, self.notify = after, every, kind, notify

    def fires(self, missed: int) -> bool:
        if missed == self.after:
            return True
        return self.every > 0 and missed > self.after and (missed - self.after) % self.every == 0


class StreakPolicy:
    def __init__(self, raw):
        self.name = raw["name"]
        self.activity = raw["activity"]
        self.cohorts = list(raw.get("cohorts", []))
        ca = raw.get("closes_at", "24:00")
        m = re.fullmatch(r"(\d{2}):(\d{2})", ca)
        if not m:
            raise ValueError(f"bad closes_at {ca!r}")
        self.close_h, self.close_m = int(m.group(1)), int(m.group(2))
        if not ((0, 1) <= (self.close_h, self.close_m) <= (24, 0)) or self.close_m > 59:
            raise ValueError(f"bad closes_at {ca!r}")
        self.steps = [
            StreakStep(int(s["after"]), int(s.get("every", 0)), s["kind"], list(s["notify"]))
            for s in raw["steps"]
        ]

    def matches(self, cohort: str) -> bool:
        return not self.cohorts or cohort in self.cohorts


class SlaPolicy:
    def __init__(self, raw):
        self.name = raw["name"]
        self.categories = list(raw["categories"])
        self.resolve_within = parse_duration(raw["resolve_within"])
        self.warn_before = [parse_duration(w)[1] for w in raw.get("warn_before", [])]
        self.warn_notify = list(raw.get("warn_notify", ["assignee_leader"]))
        self.steps = [(parse_duration(s["after"])[1], list(s["notify"])) for s in raw.get("steps", [])]


class Config:
    def __init__(self, raw: dict, base_dir: str):
        self.timezone = raw.get("timezone", "Asia/Shanghai")
        cal = raw.get("calendar", {})
        extra = {}
        for f in cal.get("files", []):
            path = f if os.path.isabs(f) else os.path.join(base_dir, f)
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            extra.update(data.get("years", {}))
        self.calendar = Calendar(cal.get("builtin", "cn-mainland"), extra)
        self.levels = list(raw.get("org", {}).get("levels", ["city", "county", "town", "village", "group"]))
        self.offices = set(raw.get("offices", {}).keys())
        self.streak = [StreakPolicy(p) for p in raw.get("streak_policies", [])]
        self.sla = [SlaPolicy(p) for p in raw.get("sla_policies", [])]
        self.sla_by_category = {}
        for p in self.sla:
            for c in p.categories:
                self.sla_by_category[c] = p


def load_config(path: str | None) -> Config:
    if path is None:
        return Config(tomllib.loads(DEFAULT_TOML), os.getcwd())
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    return Config(raw, os.path.dirname(os.path.abspath(path)))


# --------------------------------------------------------------------------------------
# Event validation (contract section 1 and the section 6 clarifications)
# --------------------------------------------------------------------------------------


class Reject(Exception):
    pass


def _is_id(v) -> bool:
    return isinstance(v, str) and 1 <= len(v.encode("utf-8")) <= 128


def _req_id(ev, key):
    if key not in ev:
        raise Reject(f"missing field `{key}`")
    if not _is_id(ev[key]):
        raise Reject(f"field `{key}` must be a string of 1..=128 bytes")
    return ev[key]


def _req_nullable_id(ev, key):
    if key not in ev:
        raise Reject(f"missing field `{key}`")
    v = ev[key]
    if v is None:
        return None
    if not _is_id(v):
        raise Reject(f"field `{key}` must be null or a string of 1..=128 bytes")
    return v


def _req_str(ev, key):
    if key not in ev:
        raise Reject(f"missing field `{key}`")
    if not isinstance(ev[key], str):
        raise Reject(f"field `{key}` must be a string")
    return ev[key]


def _opt_str(ev, key):
    v = ev.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise Reject(f"field `{key}` must be a string")
    return v


def _opt_contacts(ev, keys):
    v = ev.get("contacts")
    if v is None:
        return None
    if not isinstance(v, dict):
        raise Reject("field `contacts` must be an object")
    for k in keys:
        x = v.get(k)
        if x is not None and not isinstance(x, str):
            raise Reject(f"field `contacts.{k}` must be a string")
    return v


TYPES = {
    "org.upserted", "member.upserted", "member.removed", "app.login", "activity.recorded",
    "ticket.opened", "ticket.accepted", "ticket.replied", "ticket.resolved",
    "ticket.cancelled", "ticket.rated", "ticket.reassigned",
}


def validate(line: bytes, cfg: Config) -> dict:
    if len(line) > MAX_EVENT_BYTES:
        raise Reject(f"event larger than 64 KiB ({len(line)} bytes)")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject("not UTF-8")
    try:
        ev = json.loads(text)
    except ValueError as e:
        raise Reject(f"not valid JSON: {e}")
    if not isinstance(ev, dict):
        raise Reject("not a JSON object")
    _req_id(ev, "id")
    t = _req_str(ev, "type")
    if t not in TYPES:
        raise Reject(f"unknown type {t!r}")
    at_s = _req_str(ev, "at")
    try:
        at = parse_rfc3339(at_s)
    except ValueError as e:
        raise Reject(f"unparsable `at`: {e}")
    out = {"id": ev["id"], "type": t, "at": at}
    if t == "org.upserted":
        out["org"] = _req_id(ev, "org")
        out["parent"] = _req_nullable_id(ev, "parent")
        level = _req_str(ev, "level")
        if level not in cfg.levels:
            raise Reject(f"unknown level {level!r}")
        out["level"] = level
        _opt_str(ev, "name")
        out["leader"] = _req_nullable_id(ev, "leader")
        _opt_contacts(ev, ["group"])
    elif t == "member.upserted":
        out["member"] = _req_id(ev, "member")
        out["org"] = _req_id(ev, "org")
        _opt_str(ev, "name")
        c = _opt_str(ev, "cohort")
        if c is not None and not _is_id(c):
            raise Reject("field `cohort` must be a string of 1..=128 bytes")
        out["cohort"] = "member" if c is None else c
        _opt_contacts(ev, ["sms", "push"])
    elif t in ("member.removed", "app.login"):
        out["member"] = _req_id(ev, "member")
    elif t == "activity.recorded":
        out["member"] = _req_id(ev, "member")
        out["activity"] = _req_id(ev, "activity")
    elif t == "ticket.opened":
        out["ticket"] = _req_id(ev, "ticket")
        out["org"] = _req_id(ev, "org")
        out["category"] = _req_id(ev, "category")
        _opt_str(ev, "title")
    elif t in ("ticket.accepted", "ticket.replied", "ticket.resolved", "ticket.cancelled"):
        out["ticket"] = _req_id(ev, "ticket")
    elif t == "ticket.rated":
        out["ticket"] = _req_id(ev, "ticket")
        if "satisfied" not in ev:
            raise Reject("missing field `satisfied`")
        if not isinstance(ev["satisfied"], bool):
            raise Reject("field `satisfied` must be a boolean")
        out["satisfied"] = ev["satisfied"]
    elif t == "ticket.reassigned":
        out["ticket"] = _req_id(ev, "ticket")
        out["org"] = _req_id(ev, "org")
    return out


# --------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------


class Member:
    def __init__(self, mid, org, cohort):
        self.id = mid
        self.org = org          # None for a member created by a login before any upsert
        self.cohort = cohort
        self.logged_in = False  # first app.login seen (for this incarnation)
        self.enrolled: dict[str, int] = {}  # policy name -> missed run
        self.activities: dict[tuple[str, dt.date], list[int]] = {}  # (activity, local date) -> ats


class Ticket:
    def __init__(self, tid, org, category, opened_at, policy, deadline):
        self.id = tid
        self.open_org = org
        self.org = org
        self.category = category
        self.opened_at = opened_at
        self.policy = policy
        self.deadline = deadline
        self.closed = False  # resolved or cancelled: no more timers
        self.accepted = False
        self.replied = False
        self.resolved_at = None
        self.rating = None  # (at, seq, satisfied)


class Engine:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.clock = Clock(cfg.timezone)
        self.cal = cfg.calendar
        self.applied_ids: set[str] = set()
        self.watermark: int | None = None
        self.orgs: dict[str, dict] = {}
        self.members: dict[str, Member] = {}
        self.removed: set[str] = set()
        self.tickets: dict[str, Ticket] = {}
        self.timers: list = []  # heap of (instant, seq, ticket_id, kind, index)
        self.seq = 0
        self.next_close_day: list[dt.date | None] = [None for _ in cfg.streak]
        self.notifications: list[dict] = []
        self.unresolved = 0

    # ---- the calendar of closes ------------------------------------------------------

    def close_instant(self, pi: int, d: dt.date) -> int:
        p = self.cfg.streak[pi]
        return self.clock.local_to_ns(d, p.close_h, p.close_m)

    def _next_working(self, d: dt.date) -> dt.date:
        while not self.cal.is_working(d):
            d += dt.timedelta(days=1)
        return d

    def _pending_close(self, pi: int):
        d = self.next_close_day[pi]
        if d is None:
            return None
        d = self._next_working(d)
        self.next_close_day[pi] = d
        return self.close_instant(pi, d), d

    def advance(self, to: int):
        """Fire, in time order, every day close and timer whose instant is <= to."""
        while True:
            best = None  # (instant, order, what)
            for pi in range(len(self.cfg.streak)):
                pc = self._pending_close(pi)
                if pc is not None and pc[0] <= to:
                    if best is None or pc[0] < best[0]:
                        best = (pc[0], ("close", pi, pc[1]))
            if self.timers and self.timers[0][0] <= to:
                if best is None or self.timers[0][0] < best[0]:
                    best = (self.timers[0][0], ("timer",))
            if best is None:
                return
            what = best[1]
            if what[0] == "close":
                _, pi, d = what
                self.next_close_day[pi] = d + dt.timedelta(days=1)
                self.do_close(pi, d, best[0])
            else:
                inst, _, tid, kind, idx = heapq.heappop(self.timers)
                self.fire_timer(inst, tid, kind, idx)

    # ---- recipients ------------------------------------------------------------------

    def leader_from(self, org_id, exclude=None):
        seen = set()
        while org_id is not None and org_id in self.orgs and org_id not in seen:
            seen.add(org_id)
            o = self.orgs[org_id]
            if o["leader"] is not None and o["leader"] != exclude:
                return o["leader"]
            org_id = o["parent"]
        return None

    def resolve_streak_role(self, role, m: Member):
        if role == "self":
            return f"member:{m.id}"
        if role == "leader":
            ld = self.leader_from(m.org, exclude=m.id)
            return None if ld is None else f"member:{ld}"
        if role.startswith("office:"):
            oid = role[len("office:"):]
            return role if oid in self.cfg.offices else None
        return None

    def resolve_ticket_role(self, role, t: Ticket):
        if role == "assignee_leader":
            ld = self.leader_from(t.org)
            return None if ld is None else f"member:{ld}"
        if role == "parent_leader":
            o = self.orgs.get(t.org)
            if o is None:
                return None
            ld = self.leader_from(o["parent"])
            return None if ld is None else f"member:{ld}"
        if role.startswith("office:"):
            oid = role[len("office:"):]
            return role if oid in self.cfg.offices else None
        return None

    def emit(self, at, policy, kind, step, subject, roles, resolver, missed=None):
        seen = set()
        for role in roles:
            r = resolver(role)
            if r is None:
                self.unresolved += 1
                continue
            if r in seen:
                continue
            seen.add(r)
            n = {
                "id": f"{policy}/{subject}/{kind}/{step}/{recipient_key(r)}/{at}",
                "at_ns": at,
                "policy": policy,
                "kind": kind,
                "step": step,
                "subject": subject,
                "recipient": r,
            }
            if missed is not None:
                n["missed"] = missed
            self.notifications.append(n)

    # ---- streaks -----------------------------------------------------------------------

    def do_close(self, pi: int, d: dt.date, close_at: int):
        p = self.cfg.streak[pi]
        for mid in sorted(self.members):
            m = self.members[mid]
            if p.name not in m.enrolled:
                continue
            if not p.matches(m.cohort):
                continue
            done = any(at < close_at for at in m.activities.get((p.activity, d), ()))
            if done:
                m.enrolled[p.name] = 0
                continue
            missed = min(m.enrolled[p.name] + 1, 65535)
            m.enrolled[p.name] = missed
            for si, step in enumerate(p.steps):
                if step.fires(missed):
                    self.emit(close_at, p.name, step.kind, si + 1, f"member:{m.id}", step.notify,
                              lambda role, m=m: self.resolve_streak_role(role, m), missed)

    # ---- tickets -----------------------------------------------------------------------

    def deadline_of(self, policy: SlaPolicy, opened_at: int) -> int:
        unit, n = policy.resolve_within
        if unit == "ns":
            return opened_at + n
        d = self.clock.local_date(opened_at)
        count = 0
        while count < n:
            d += dt.timedelta(days=1)
            if self.cal.is_working(d):
                count += 1
        return self.clock.local_to_ns(d, 24, 0)

    def fire_timer(self, inst, tid, kind, idx):
        t = self.tickets[tid]
        if t.closed:
            return
        p = t.policy
        if kind == "warning":
            roles = p.warn_notify
        else:
            roles = p.steps[idx][1]
        self.emit(inst, p.name, kind, idx + 1, f"ticket:{tid}", roles,
                  lambda role, t=t: self.resolve_ticket_role(role, t))

    def push_timer(self, inst, tid, kind, idx):
        self.seq += 1
        heapq.heappush(self.timers, (inst, self.seq, tid, kind, idx))

    # ---- applying events ------------------------------------------------------------

    def apply(self, ev: dict):
        t = ev["type"]
        at = ev["at"]
        if t == "org.upserted":
            self.orgs[ev["org"]] = {"parent": ev["parent"], "leader": ev["leader"], "level": ev["level"]}
        elif t == "member.upserted":
            mid = ev["member"]
            m = self.members.get(mid)
            if m is None:
                # new, or removed and upserted again: a new member, not tracked until a login
                self.removed.discard(mid)
                self.members[mid] = Member(mid, ev["org"], ev["cohort"])
            else:
                m.org = ev["org"]
                m.cohort = ev["cohort"]
        elif t == "member.removed":
            mid = ev["member"]
            if mid in self.members:
                del self.members[mid]
                self.removed.add(mid)
        elif t == "app.login":
            mid = ev["member"]
            if mid in self.removed:
                return  # a login of a removed member is ignored
            m = self.members.get(mid)
            if m is None:
                m = Member(mid, None, "member")
                self.members[mid] = m
            if m.logged_in:
                return
            m.logged_in = True
            # Section 2 rule 2 ("Rules, exactly") and the section 6 clarification: tracking
            # starts at the first login; the cohorts are checked at each close with the
            # member's current cohort (a member who logs in as `member` and is later made
            # `cadre` is tracked by a `cadre` policy from then on). The event table's "whose
            # cohorts match" is read as that close-time check, not as a filter at login.
            for p in self.cfg.streak:
                m.enrolled[p.name] = 0
        elif t == "activity.recorded":
            m = self.members.get(ev["member"])
            if m is None:
                return  # unknown or removed member: ignored
            m.activities.setdefault((ev["activity"], self.clock.local_date(at)), []).append(at)
        elif t == "ticket.opened":
            tid = ev["ticket"]
            if tid in self.tickets:
                return  # the clock started at the first open
            policy = self.cfg.sla_by_category.get(ev["category"])
            deadline = None if policy is None else self.deadline_of(policy, at)
            tk = Ticket(tid, ev["org"], ev["category"], at, policy, deadline)
            self.tickets[tid] = tk
            if policy is not None:
                wm = self.watermark
                for i, w in enumerate(policy.warn_before):
                    inst = deadline - w
                    if inst <= at or inst <= wm:
                        continue
                    self.push_timer(inst, tid, "warning", i)
                for i, (after, _roles) in enumerate(policy.steps):
                    inst = deadline + after
                    if inst <= wm:
                        continue
                    self.push_timer(inst, tid, "escalation", i)
        else:
            tk = self.tickets.get(ev["ticket"])
            if tk is None:
                return  # lifecycle event of an unknown ticket: ignored
            if t == "ticket.accepted":
                tk.accepted = True
            elif t == "ticket.replied":
                tk.replied = True
            elif t == "ticket.resolved":
                tk.closed = True
                # Stats are in event time (section 2 rule 6: a late event "is kept for the
                # record and stats"): a ticket resolved twice was resolved at the earlier `at`.
                if tk.resolved_at is None or at < tk.resolved_at:
                    tk.resolved_at = at
            elif t == "ticket.cancelled":
                tk.closed = True
            elif t == "ticket.rated":
                # "only its latest rating counts": latest in event time (ties: the later line)
                self.seq += 1
                r = (at, self.seq, ev["satisfied"])
                if tk.rating is None or r[:2] > tk.rating[:2]:
                    tk.rating = r
            elif t == "ticket.reassigned":
                tk.org = ev["org"]

    def process(self, lineno: int, line: bytes, until: int | None):
        try:
            ev = validate(line, self.cfg)
        except Reject as e:
            print(f"line {lineno}: rejected: {e}", file=sys.stderr)
            return
        if ev["id"] in self.applied_ids:
            return  # duplicate: acknowledged and ignored
        if until is not None and ev["at"] > until:
            # Past --until: not applied (the run stops at --until).
            return
        self.applied_ids.add(ev["id"])
        if self.watermark is None:
            first = self.clock.local_date(ev["at"]) - dt.timedelta(days=2)
            self.next_close_day = [first for _ in self.cfg.streak]
            self.watermark = ev["at"]
            self.advance(ev["at"])
        elif ev["at"] > self.watermark:
            self.advance(ev["at"])
            self.watermark = ev["at"]
        self.apply(ev)

    def finish(self, until: int | None):
        if self.watermark is None:
            if until is None:
                return
            # nothing applied: nothing tracked, no tickets, nothing can fire
            return
        end = self.watermark if until is None else until
        if end > self.watermark:
            self.advance(end)
            self.watermark = end
        else:
            self.advance(self.watermark)

    # ---- output ------------------------------------------------------------------------

    def notification_lines(self):
        out = []
        for n in sorted(self.notifications, key=lambda n: n["at_ns"]):
            o = {"id": n["id"], "at": self.clock.fmt(n["at_ns"]), "policy": n["policy"],
                 "kind": n["kind"], "step": n["step"], "subject": n["subject"],
                 "recipient": n["recipient"]}
            if "missed" in n:
                o["missed"] = n["missed"]
            out.append(json.dumps(o, ensure_ascii=False))
        return out

    def ancestors_and_self(self, org_id):
        chain = [org_id]
        seen = {org_id}
        cur = self.orgs.get(org_id)
        while cur is not None and cur["parent"] is not None and cur["parent"] not in seen:
            p = cur["parent"]
            chain.append(p)
            seen.add(p)
            cur = self.orgs.get(p)
        return chain

    def stats_lines(self):
        rows: dict[tuple[str, str], dict] = {}
        for tk in self.tickets.values():
            month = self.clock.local_date(tk.opened_at).strftime("%Y-%m")
            on_time = (tk.resolved_at is not None and tk.deadline is not None
                       and tk.resolved_at <= tk.deadline)
            for org in self.ancestors_and_self(tk.open_org):
                r = rows.setdefault((org, month), {
                    "opened": 0, "accepted": 0, "replied": 0, "resolved": 0,
                    "resolved_on_time": 0, "rated": 0, "satisfied": 0})
                r["opened"] += 1
                r["accepted"] += tk.accepted
                r["replied"] += tk.replied
                r["resolved"] += tk.resolved_at is not None
                r["resolved_on_time"] += on_time
                r["rated"] += tk.rating is not None
                r["satisfied"] += tk.rating is not None and tk.rating[2]
        out = []
        for (org, month) in sorted(rows):
            r = rows[(org, month)]

            def rate(a, b):
                return None if b == 0 else a / b

            o = {"org": org, "month": month}
            o.update(r)
            o["accept_rate"] = rate(r["accepted"], r["opened"])
            o["reply_rate"] = rate(r["replied"], r["opened"])
            o["resolve_rate"] = rate(r["resolved"], r["opened"])
            o["satisfaction_rate"] = rate(r["satisfied"], r["rated"])
            out.append(json.dumps(o, ensure_ascii=False))
        return out


def recipient_key(r: str) -> str:
    return r.replace("/", "%2F")


def replay(args) -> int:
    cfg = load_config(args.config)
    eng = Engine(cfg)
    until = parse_rfc3339(args.until) if args.until else None
    with open(args.events, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, raw in enumerate(lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.strip() == b"":
            continue  # blank lines of an NDJSON file are skipped, not rejected
        eng.process(i, raw, until)
    eng.finish(until)
    out = eng.stats_lines() if args.stats else eng.notification_lines()
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="redcloud_ref.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay")
    rp.add_argument("--events", required=True)
    rp.add_argument("--config")
    rp.add_argument("--until")
    rp.add_argument("--stats", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "replay":
        return replay(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

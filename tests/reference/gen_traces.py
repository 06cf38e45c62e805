#!/usr/bin/env python3
"""Random but meaningful event traces (and optionally configs) for the reference diff test.

Usage:
    gen_traces.py --seed N --out FILE [--config-out FILE]

Writes an NDJSON trace to FILE and, with --config-out, a random config in the documented
TOML format (docs/config.md). Without --config-out the trace targets the embedded default
config (policy `quiz` on activity `quiz`, SLA policy `tickets` on wish/help/suggestion).
Prints one JSON object on stdout: {"until": RFC3339, "until_mid": RFC3339, "events": n,
"lines": n}; `until` is 25 days after the last event so that every ticket timer and day
close of interest is due; `until_mid` is in the middle of the trace. --disputed adds the
cases listed under "Disagreements" in README.md.

The traces aim at the tricky rules: late (out of order) events, closes at 20:00, logins
after the close, make-up working days and holidays (2024-2026, plus a window running into
2027 where the calendar falls back to Monday-Friday), the leader fallback (orgs without a
leader, members leading their own org, leaders changing), cohorts changing, removal and
re-upsert, reassignment, late ticket opens, warnings whose instant is before the opening,
duplicate ids and malformed lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import zoneinfo

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redcloud_ref as ref  # noqa: E402  (for the calendar and durations only)

NS = ref.NS
HOUR = 3600 * NS
DAY = 24 * HOUR

# (first local date, length in days)
ANCHORS = [
    ("2026-02-02", 30),  # Spring Festival 2026: 16-20 and 23 Feb off, Sat 14 and Sat 28 Feb worked
    ("2026-09-14", 30),  # Sun 20 Sep worked, 25 Sep off, National Day 1-7 Oct, Sat 10 Oct worked
    ("2025-01-20", 25),  # Sun 26 Jan worked, 28 Jan - 4 Feb off, Sat 8 Feb worked
    ("2025-09-22", 25),  # Sun 28 Sep worked, 1-8 Oct off, Sat 11 Oct worked
    ("2024-09-09", 28),  # Sat 14 Sep worked, 16-17 Sep off, Sun 29 Sep worked, Oct, Sat 12 Oct
    ("2026-04-27", 18),  # May Day 2026, Sat 9 May worked
    ("2025-12-22", 20),  # New Year 2026, Sun 4 Jan worked
    ("2026-12-14", 24),  # runs into 2027: weekday fallback
    ("2026-02-09", 26),  # Spring Festival 2026 again, shorter lead-in
    ("2026-09-28", 20),  # National Day 2026 core
    ("2026-03-23", 22),  # Qingming (Mon 6 Apr off); Europe switches to summer time on 29 Mar
    ("2025-10-13", 25),  # Sat 11 Oct worked just before; Europe back to winter time on 26 Oct
]
DST_ANCHORS = {10, 11}

COHORTS = ["member", "cadre", "stationed"]
COVERED_DEFAULT = ["wish", "help", "suggestion"]
ALL_CATEGORIES = ["wish", "help", "suggestion", "consult", "complaint"]


# --------------------------------------------------------------------------------------
# Random config
# --------------------------------------------------------------------------------------


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def toml_list(xs):
    return "[" + ", ".join(toml_str(x) for x in xs) + "]"


def random_config(rng: random.Random, anchor: int):
    tz = rng.choice(["Asia/Shanghai"] * 6 + ["Asia/Tokyo", "UTC", "Europe/Berlin", "Asia/Kolkata"])
    if anchor in DST_ANCHORS and rng.random() < 0.6:
        tz = "Europe/Berlin"
    levels = ["city", "county", "town", "village", "group"]
    if rng.random() < 0.2:
        levels = ["city", "county", "town", "village", "group", "team"]
    offices = ["city", "county"] + (["street-1"] if rng.random() < 0.5 else [])
    office_roles = [f"office:{o}" for o in offices]

    streak = []
    n_streak = rng.choice([1, 1, 2])
    names = ["quiz", "worklog"]
    for i in range(n_streak):
        name = names[i]
        cohorts = rng.choice([[], [], ["cadre"], ["member", "cadre"], ["stationed"], ["member"]])
        closes_at = rng.choice(["24:00", "20:00", "20:00", "18:30", "12:00", "23:59", "00:01"])
        if name == "worklog":
            closes_at = rng.choice(["20:00", "20:00", "24:00"])
        steps = []
        for _ in range(rng.randint(1, 3)):
            after = rng.randint(1, 5)
            every = rng.choice([0, 0, 1, 2, 3])
            kind = rng.choice(["reminder", "escalation"])
            pool = ["self", "leader"] + office_roles
            notify = rng.sample(pool, rng.randint(1, min(3, len(pool))))
            steps.append((after, every, kind, notify))
        streak.append(dict(name=name, activity=name, cohorts=cohorts, closes_at=closes_at, steps=steps))

    sla = []
    cats = ["wish", "help", "suggestion", "consult"]
    rng.shuffle(cats)
    if rng.random() < 0.5:
        groups = [cats[:2], cats[2:3]]
    else:
        groups = [cats[:3]]
    for gi, group in enumerate(groups):
        name = ["tickets", "hotline"][gi]
        rw = rng.choice(["10d", "36h", "3d", "2d12h", "5wd", "10wd", "1wd", "2wd"])
        unit, val = ref.parse_duration(rw)
        cand = ["2d", "12h", "1h30m", "6h", "1d", "3d"]
        if unit == "ns":
            cand = [c for c in cand if ref.parse_duration(c)[1] < val]
        warn = rng.sample(cand, rng.randint(0, min(2, len(cand))))
        rpool = ["assignee_leader", "parent_leader"] + office_roles
        warn_notify = rng.sample(rpool, rng.randint(1, 3))
        step_afters = sorted(rng.sample(["0h", "12h", "1d", "2d", "5d"], rng.randint(0, 3)),
                             key=lambda s: ref.parse_duration(s)[1])
        steps = [(a, rng.sample(rpool, rng.randint(1, 3))) for a in step_afters]
        sla.append(dict(name=name, categories=group, resolve_within=rw, warn_before=warn,
                        warn_notify=warn_notify, steps=steps))

    builtin = "weekdays" if rng.random() < 0.1 else "cn-mainland"
    lines = [f"# generated by tests/reference/gen_traces.py", f"timezone = {toml_str(tz)}", "",
             "[calendar]", f"builtin = {toml_str(builtin)}", "", "[org]", f"levels = {toml_list(levels)}", ""]
    for o in offices:
        lines += [f"[offices.{o}]", f"name = {toml_str('office ' + o)}", ""]
    for p in streak:
        lines += ["[[streak_policies]]", f"name = {toml_str(p['name'])}",
                  f"activity = {toml_str(p['activity'])}", f"cohorts = {toml_list(p['cohorts'])}",
                  f"closes_at = {toml_str(p['closes_at'])}", "steps = ["]
        for after, every, kind, notify in p["steps"]:
            lines.append(f"  {{ after = {after}, every = {every}, kind = {toml_str(kind)}, notify = {toml_list(notify)} }},")
        lines += ["]", ""]
    for p in sla:
        lines += ["[[sla_policies]]", f"name = {toml_str(p['name'])}",
                  f"categories = {toml_list(p['categories'])}",
                  f"resolve_within = {toml_str(p['resolve_within'])}",
                  f"warn_before = {toml_list(p['warn_before'])}",
                  f"warn_notify = {toml_list(p['warn_notify'])}", "steps = ["]
        for after, notify in p["steps"]:
            lines.append(f"  {{ after = {toml_str(after)}, notify = {toml_list(notify)} }},")
        lines += ["]", ""]
    text = "\n".join(lines)
    params = dict(
        tz=tz, levels=levels,
        activities=[p["activity"] for p in streak],
        covered=[c for p in sla for c in p["categories"]],
        closes=[p["closes_at"] for p in streak],
    )
    return text, params


def default_params():
    return dict(tz="Asia/Shanghai", levels=["city", "county", "town", "village", "group"],
                activities=["quiz"], covered=list(COVERED_DEFAULT), closes=["24:00"])


# --------------------------------------------------------------------------------------
# Trace
# --------------------------------------------------------------------------------------


class Gen:
    def __init__(self, rng: random.Random, params: dict, calendar: ref.Calendar):
        self.rng = rng
        self.p = params
        self.tz = zoneinfo.ZoneInfo(params["tz"])
        self.cal = calendar
        self.events = []  # dicts with _t (instant ns), _fk (file key ns), _seq
        self.seq = 0
        self.nid = 0

    def new_id(self, prefix="e"):
        self.nid += 1
        return f"{prefix}{self.nid:05d}"

    def local(self, d: dt.date, h=0, mi=0, s=0, ms=0) -> int:
        x = dt.datetime(d.year, d.month, d.day, h, mi, s, tzinfo=self.tz)
        return int(x.timestamp()) * NS + ms * 1_000_000

    def ev(self, t: int, typ: str, late: int = 0, **fields):
        self.seq += 1
        e = {"id": self.new_id(), "type": typ, "_t": t, "_fk": t + late, "_seq": self.seq}
        e.update(fields)
        self.events.append(e)
        return e

    def fmt_at(self, t: int) -> str:
        secs, rem = divmod(t, NS)
        r = self.rng.random()
        if r < 0.8:
            tz = self.tz
        elif r < 0.9:
            tz = dt.timezone.utc
        else:
            tz = dt.timezone(dt.timedelta(minutes=self.rng.choice([540, -180, 330, 0, 480])))
        x = dt.datetime.fromtimestamp(secs, tz).replace(microsecond=rem // 1000)
        s = x.isoformat(timespec="milliseconds" if rem else "seconds")
        if tz is dt.timezone.utc and self.rng.random() < 0.7:
            s = s.replace("+00:00", "Z")
        return s

    def rand_time(self, d: dt.date, edges=True) -> int:
        rng = self.rng
        if edges and rng.random() < 0.25:
            h, mi, s = rng.choice([(19, 59, 59), (20, 0, 0), (20, 0, 1), (23, 59, 59), (0, 0, 0), (0, 0, 59), (0, 1, 0),
                                   (18, 29, 59), (18, 30, 0), (12, 0, 0), (11, 59, 59), (23, 59, 0)])
            return self.local(d, h, mi, s)
        h = rng.choice(list(range(6, 24)) + [20, 21, 22, 8, 9])
        ms = rng.choice([0, 0, 0, 0, 250])
        return self.local(d, h, rng.randint(0, 59), rng.randint(0, 59), ms)


def build(seed: int, params: dict, calendar: ref.Calendar):
    rng = random.Random(seed * 7919 + 17)
    g = Gen(rng, params, calendar)
    start_s, length = ANCHORS[seed % len(ANCHORS)]
    start = dt.date.fromisoformat(start_s) + dt.timedelta(days=rng.randint(0, 3))
    length = max(12, length - rng.randint(0, 8))
    days = [start + dt.timedelta(days=i) for i in range(length)]
    levels = params["levels"]
    activities = params["activities"]

    # ---- members (ids first, leaders need them) ----
    n_members = rng.randint(3, 10)
    mids = [f"m{i}" for i in range(1, n_members + 1)]
    if rng.random() < 0.3:
        mids[-1] = "党员" + str(n_members)

    # ---- org tree ----
    orgs = [("c1", None, levels[0])]
    for k in range(rng.randint(1, 2)):
        orgs.append((f"k{k + 1}", "c1", levels[1]))
    counties = [o[0] for o in orgs if o[2] == levels[1]]
    for t in range(rng.randint(1, 3)):
        orgs.append((f"t{t + 1}", rng.choice(counties), levels[2]))
    towns = [o[0] for o in orgs if o[2] == levels[2]]
    for v in range(rng.randint(0, 2)):
        orgs.append((f"v{v + 1}", rng.choice(towns), levels[3]))
    org_ids = [o[0] for o in orgs]
    leaders = {}
    for oid, _, _ in orgs:
        r = rng.random()
        leaders[oid] = None if r < 0.4 else (rng.choice(mids) if r < 0.85 else f"boss-{oid}")
    # at least one org without a leader
    leaders[rng.choice(org_ids[1:])] = None
    member_org = {m: rng.choice(org_ids[1:] if rng.random() < 0.9 else org_ids) for m in mids}
    if rng.random() < 0.05:
        member_org[rng.choice(mids)] = "ghost-org"
    # a member leading their own org
    selfish = rng.choice(mids)
    if member_org[selfish] in leaders:
        leaders[member_org[selfish]] = selfish

    day0 = days[0]
    for oid, parent, level in orgs:
        g.ev(g.local(day0, 7, rng.randint(0, 30)), "org.upserted", org=oid, parent=parent, level=level,
             name=f"org {oid}", leader=leaders[oid])

    cohort_of = {m: rng.choice(COHORTS) for m in mids}
    login_days = {}
    for m in mids:
        upsert_t = g.local(day0, 8, rng.randint(0, 59))
        login_before_upsert = rng.random() < 0.15
        if login_before_upsert:
            upsert_t += rng.randint(1, 3) * DAY
        fields = dict(member=m, org=member_org[m], name=f"name {m}")
        if cohort_of[m] != "member" or rng.random() < 0.5:
            fields["cohort"] = cohort_of[m]
        if rng.random() < 0.3:
            fields["contacts"] = {"sms": "1380000" + str(rng.randint(1000, 9999))}
        g.ev(upsert_t, "member.upserted", late=(rng.randint(1, 20) * HOUR if rng.random() < 0.1 else 0), **fields)
        # login
        if rng.random() < 0.88:
            ld = days[rng.randint(0, min(6, len(days) - 1))]
            if rng.random() < 0.35:
                lt = g.local(ld, rng.choice([20, 21, 22, 23]), rng.randint(0, 59))
            elif rng.random() < 0.15:
                lt = g.local(ld, *rng.choice([(20, 0, 0), (0, 0, 0), (19, 59, 59), (18, 30, 0), (12, 0, 0)]))
            else:
                lt = g.rand_time(ld)
            if login_before_upsert:
                lt = min(lt, upsert_t - HOUR)
            late = rng.randint(1, 72) * HOUR if rng.random() < 0.2 else 0
            g.ev(lt, "app.login", late=late, member=m)
            login_days[m] = lt
            if rng.random() < 0.2:
                g.ev(lt + rng.randint(1, 100) * HOUR, "app.login", member=m)

    # ---- activities ----
    for m in mids:
        p = rng.uniform(0.25, 0.95)
        gap_start = rng.randint(0, len(days) - 1)
        gap_len = rng.choice([0, 3, 5, 6, 8, 11]) if rng.random() < 0.6 else 0
        for i, d in enumerate(days):
            if gap_start <= i < gap_start + gap_len:
                continue
            for _ in range(2 if rng.random() < 0.1 else 1):
                if rng.random() >= p:
                    continue
                t = g.rand_time(d)
                act = rng.choice(activities) if rng.random() < 0.9 else "read"
                late = 0
                if rng.random() < 0.1:
                    late = rng.choice([1, 2, 3, 5, 10, 26, 50]) * HOUR
                g.ev(t, "activity.recorded", late=late, member=m, activity=act)
    # an unknown member's activity, then their login (creating them with the default cohort)
    if rng.random() < 0.4:
        d = days[rng.randint(0, 4)]
        g.ev(g.local(d, 9), "activity.recorded", member="walk-in", activity=activities[0])
        g.ev(g.local(d, 10), "app.login", member="walk-in")
        for d2 in days[5:12]:
            if rng.random() < 0.5:
                g.ev(g.rand_time(d2), "activity.recorded", member="walk-in", activity=activities[0])
        if rng.random() < 0.5:
            g.ev(g.local(days[8], 11), "member.upserted", member="walk-in", org=rng.choice(org_ids),
                 cohort=rng.choice(COHORTS))

    # ---- mid-trace changes ----
    for m in rng.sample(mids, min(len(mids), rng.randint(1, 3))):
        d = rng.choice(days[2:])
        new_cohort = rng.choice([c for c in COHORTS if c != cohort_of[m]])
        fields = dict(member=m, org=member_org[m])
        if new_cohort != "member" or rng.random() < 0.5:
            fields["cohort"] = new_cohort
        g.ev(g.rand_time(d), "member.upserted", late=(5 * HOUR if rng.random() < 0.2 else 0), **fields)
        if rng.random() < 0.5:
            d2 = d + dt.timedelta(days=rng.randint(2, 6))
            back = dict(member=m, org=member_org[m])
            if cohort_of[m] != "member":
                back["cohort"] = cohort_of[m]
            g.ev(g.rand_time(d2), "member.upserted", **back)
    if rng.random() < 0.6:
        m = rng.choice(mids)
        g.ev(g.rand_time(rng.choice(days[3:])), "member.upserted", member=m,
             org=rng.choice(org_ids), cohort=cohort_of[m])
    for _ in range(rng.randint(1, 2)):
        oid, parent, level = rng.choice(orgs)
        nl = rng.choice([None, None, rng.choice(mids), f"boss2-{oid}"])
        g.ev(g.rand_time(rng.choice(days[2:])), "org.upserted", org=oid, parent=parent, level=level,
             leader=nl)
    if rng.random() < 0.4:
        # a town or village moves to another parent (leader fallback and stats roll-up follow)
        movable = [o for o in orgs if o[2] in (levels[2], levels[3])]
        oid, parent, level = rng.choice(movable)
        newp = rng.choice([o[0] for o in orgs if o[0] != oid and o[1] != oid and o[0] != parent] + ["ghost-parent"])
        g.ev(g.rand_time(rng.choice(days[2:])), "org.upserted", org=oid, parent=newp, level=level,
             leader=leaders[oid])
    # removal, maybe re-upsert and re-login
    if rng.random() < 0.7:
        m = rng.choice(mids)
        i = rng.randint(3, len(days) - 6)
        rt = g.rand_time(days[i])
        g.ev(rt, "member.removed", member=m, late=(rng.randint(1, 30) * HOUR if rng.random() < 0.2 else 0))
        if rng.random() < 0.4:
            g.ev(rt + 2 * HOUR, "activity.recorded", member=m, activity=activities[0])
            g.ev(rt + 3 * HOUR, "app.login", member=m)
        if rng.random() < 0.7:
            ut = rt + rng.randint(1, 60) * HOUR
            g.ev(ut, "member.upserted", member=m, org=rng.choice(org_ids), cohort=rng.choice(COHORTS))
            if rng.random() < 0.7:
                g.ev(ut + rng.randint(0, 50) * HOUR, "app.login", member=m)
    if rng.random() < 0.2:
        g.ev(g.rand_time(rng.choice(days)), "member.removed", member="nobody")

    # ---- tickets ----
    covered = params["covered"]
    pol_by_cat = {}
    n_tickets = rng.randint(3, 9)
    for k in range(n_tickets):
        tid = f"T{k + 1}"
        d = rng.choice(days[:-2])
        t0 = g.rand_time(d)
        org = rng.choice(org_ids) if rng.random() < 0.93 else "ghost-org"
        cat = rng.choice(covered) if (covered and rng.random() < 0.75) else rng.choice(
            [c for c in ALL_CATEGORIES if c not in covered] or ["complaint"])
        late_open = rng.choice([1, 2, 4, 8, 9, 11]) * DAY + rng.randint(0, 23) * HOUR if rng.random() < 0.25 else 0
        group = []
        fields = dict(ticket=tid, org=org, category=cat)
        if rng.random() < 0.5:
            fields["title"] = f"请求 {tid}"
        group.append(g.ev(t0, "ticket.opened", **fields))
        if rng.random() < 0.1:
            group.append(g.ev(t0 + 3 * HOUR, "ticket.opened", ticket=tid, org=rng.choice(org_ids), category=cat))
        if rng.random() < 0.7:
            group.append(g.ev(t0 + rng.randint(1, 48) * HOUR, "ticket.accepted", ticket=tid))
            if rng.random() < 0.2:
                group.append(g.ev(t0 + rng.randint(49, 90) * HOUR, "ticket.accepted", ticket=tid))
        if rng.random() < 0.6:
            group.append(g.ev(t0 + rng.randint(2, 120) * HOUR, "ticket.replied", ticket=tid))
        if rng.random() < 0.35:
            group.append(g.ev(t0 + rng.randint(1, 150) * HOUR, "ticket.reassigned", ticket=tid,
                              org=rng.choice(org_ids + ["ghost-org"])))
        # the outcome, around the deadline
        dl = None
        if cat in covered:
            dl = params["deadline"](cat, t0)
        r = rng.random()
        end_t = None
        if r < 0.5:
            if dl is not None and rng.random() < 0.7:
                offs = [-3 * DAY, -36 * HOUR, -1 * HOUR, 0, 0, 1, HOUR, 30 * HOUR, 3 * DAY, 6 * DAY]
                offs += [-w for w in params["warns"](cat)] + params["step_afters"](cat)
                end_t = dl + rng.choice(offs)
                end_t = max(end_t, t0 + 1)
            else:
                end_t = t0 + rng.randint(1, 400) * HOUR
            late = rng.choice([2, 20, 50]) * HOUR if rng.random() < 0.1 else 0
            group.append(g.ev(end_t, "ticket.resolved", late=late, ticket=tid))
        elif r < 0.65:
            end_t = t0 + rng.randint(1, 300) * HOUR
            group.append(g.ev(end_t, "ticket.cancelled", ticket=tid))
            if rng.random() < 0.3:
                end_t += rng.randint(1, 50) * HOUR
                group.append(g.ev(end_t, "ticket.resolved", ticket=tid))
        if end_t is not None and rng.random() < 0.6:
            rt = end_t + rng.randint(1, 30) * HOUR
            # ratings are never made late here: see --disputed
            group.append(g.ev(rt, "ticket.rated", ticket=tid, satisfied=rng.random() < 0.6))
            if rng.random() < 0.3:
                group.append(g.ev(rt + rng.randint(1, 30) * HOUR, "ticket.rated", ticket=tid,
                                  satisfied=rng.random() < 0.5))
        if late_open:
            base = t0 + late_open
            if dl is not None and rng.random() < 0.6:
                # the watermark lands exactly on one of the ticket's timer instants just
                # before the late open is applied: that timer must never fire
                insts = [dl - w for w in params["warns"](cat)] + [dl + a for a in params["step_afters"](cat)]
                insts = [i for i in insts if t0 < i]
                if insts:
                    sync_t = rng.choice(insts)
                    base = sync_t
                    sync = g.ev(sync_t, "ticket.replied", ticket="T-sync")
                    sync["_fk"] = base
                    sync["_seq"] = group[0]["_seq"] - 0.5
            for e in group:
                e["_fk"] = max(e["_fk"], base)
    # a lifecycle event for an unknown ticket
    if rng.random() < 0.3:
        g.ev(g.rand_time(rng.choice(days)), "ticket.accepted", ticket="T-unknown")

    return g, days


def malformed_lines(rng: random.Random, g: Gen, days, params):
    """A few lines that must be rejected; each a (otherwise meaningful) event."""
    d = rng.choice(days)
    at = g.fmt_at(g.local(d, 10))
    m = "m1"
    cands = [
        lambda: '{"id":"bad-json","type":"app.login","at":"' + at + '","member":"m1"',
        lambda: json.dumps({"id": g.new_id("x"), "type": "activity.recorded", "at": at, "member": m}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "activity.recorded", "at": at, "member": 17,
                            "activity": params["activities"][0]}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "member.promoted", "at": at, "member": m}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "activity.recorded", "at": "2026-02-30T10:00:00+08:00",
                            "member": m, "activity": params["activities"][0]}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "activity.recorded", "at": "yesterday",
                            "member": m, "activity": params["activities"][0]}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "activity.recorded", "at": d.isoformat() + "T10:00:00",
                            "member": m, "activity": params["activities"][0]}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "org.upserted", "at": at, "org": "k1",
                            "level": params["levels"][1], "leader": None}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "org.upserted", "at": at, "org": "k1", "parent": "c1",
                            "level": params["levels"][1]}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "org.upserted", "at": at, "org": "k1", "parent": "c1",
                            "level": "province", "leader": None}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "member.upserted", "at": at, "member": m, "org": "k1",
                            "name": 5}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "member.upserted", "at": at, "member": m, "org": "k1",
                            "contacts": "13800000000"}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "member.upserted", "at": at, "member": m, "org": "k1",
                            "cohort": 3}),
        lambda: json.dumps({"id": "x" * 129, "type": "app.login", "at": at, "member": m}),
        lambda: json.dumps({"id": "长" * 43, "type": "app.login", "at": at, "member": m}, ensure_ascii=False),
        lambda: json.dumps({"id": "", "type": "app.login", "at": at, "member": m}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "app.login", "at": at, "member": ""}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "ticket.rated", "at": at, "ticket": "T1",
                            "satisfied": "yes"}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "ticket.opened", "at": at, "ticket": "T99", "org": "c1",
                            "category": "wish", "title": "长" * 23000}, ensure_ascii=False),
        lambda: "[]",
        lambda: json.dumps({"id": g.new_id("x"), "type": "app.login", "at": 1767225600, "member": m}),
        lambda: json.dumps({"id": g.new_id("x"), "type": None, "at": at, "member": m}),
        lambda: json.dumps({"id": None, "type": "app.login", "at": at, "member": m}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "ticket.reassigned", "at": at, "ticket": "T1"}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "ticket.opened", "at": at, "ticket": "T98", "org": "c1"}),
        lambda: json.dumps({"id": g.new_id("x"), "type": "org.upserted", "at": at, "org": "k1", "parent": 5,
                            "level": params["levels"][1], "leader": None}),
    ]
    return [f() for f in rng.sample(cands, rng.randint(2, 6))]


def edge_valid_events(rng: random.Random, g: Gen, days, params):
    """Valid lines at the edges of validation (must be applied)."""
    out = []
    d = rng.choice(days[1:])
    t = g.rand_time(d)
    act = params["activities"][0]
    choices = [
        lambda: {"id": "长" * 42 + "ab", "type": "activity.recorded", "_t": t, "member": "m1", "activity": act},
        lambda: {"id": g.new_id("v"), "type": "member.upserted", "_t": t, "member": "m2", "org": "c1",
                 "cohort": None, "name": None, "contacts": None},
        lambda: {"id": g.new_id("v"), "type": "activity.recorded", "_t": t, "member": "m1", "activity": act,
                 "extra": {"nested": [1, 2, 3]}, "source": "app"},
        lambda: {"id": g.new_id("v"), "type": "org.upserted", "_t": t, "org": "t9", "parent": None,
                 "level": params["levels"][-1], "leader": None, "contacts": {"group": "robot-key"}},
        lambda: {"id": g.new_id("v"), "type": "ticket.opened", "_t": t, "ticket": "T77", "org": "t1",
                 "category": rng.choice(params["covered"] or ["wish"]), "title": None},
    ]
    for f in rng.sample(choices, rng.randint(1, 3)):
        out.append(f())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config-out")
    ap.add_argument("--disputed", action="store_true",
                    help="also add the cases where the Rust engine and the reference disagree "
                         "(see README.md): a second, older rating or resolve arriving late")
    args = ap.parse_args()

    crng = random.Random(args.seed * 104729 + 3)
    if args.config_out:
        text, params = random_config(crng, args.seed % len(ANCHORS))
        with open(args.config_out, "w", encoding="utf-8") as fh:
            fh.write(text)
        cfg = ref.Config(__import__("tomllib").loads(text), os.path.dirname(os.path.abspath(args.config_out)))
    else:
        params = default_params()
        cfg = ref.load_config(None)
    clock = ref.Clock(cfg.timezone)
    eng = ref.Engine(cfg)

    def deadline(cat, t0):
        pol = cfg.sla_by_category.get(cat)
        return None if pol is None else eng.deadline_of(pol, t0)

    params["deadline"] = deadline
    params["warns"] = lambda cat: (cfg.sla_by_category[cat].warn_before if cat in cfg.sla_by_category else [])
    params["step_afters"] = lambda cat: ([a for a, _ in cfg.sla_by_category[cat].steps]
                                         if cat in cfg.sla_by_category else [])

    g, days = build(args.seed, params, cfg.calendar)
    rng = g.rng

    # extra valid edge events
    for e in edge_valid_events(rng, g, days, params):
        g.seq += 1
        e["_fk"] = e["_t"]
        e["_seq"] = g.seq
        g.events.append(e)

    if args.disputed:
        # A second rating / resolve of a ticket whose `at` is before the first one, arriving
        # after it (late). The reference counts the latest rating and the earliest resolve
        # in event time; see README.md, "Disagreements".
        opened = {e["ticket"]: e["_t"] for e in g.events if e["type"] == "ticket.opened"}
        for e in list(g.events):
            if e["type"] == "ticket.rated" and rng.random() < 0.7:
                g.seq += 1
                e2 = {"id": g.new_id("d"), "type": "ticket.rated", "ticket": e["ticket"],
                      "satisfied": not e["satisfied"], "_t": e["_t"] - HOUR,
                      "_fk": e["_fk"] + 2 * HOUR, "_seq": g.seq}
                g.events.append(e2)
            if e["type"] == "ticket.resolved" and rng.random() < 0.7:
                t = max(opened.get(e["ticket"], e["_t"]) + HOUR, e["_t"] - rng.choice([1, 2, 4]) * DAY)
                if t < e["_t"]:
                    g.seq += 1
                    g.events.append({"id": g.new_id("d"), "type": "ticket.resolved", "ticket": e["ticket"],
                                     "_t": t, "_fk": e["_fk"] + HOUR, "_seq": g.seq})

    # late placement: most events keep their place, some travel later in the file
    evs = sorted(g.events, key=lambda e: (e["_fk"], e["_seq"]))

    def render(e, at_override=None):
        obj = {"id": e["id"], "type": e["type"], "at": at_override or g.fmt_at(e["_t"])}
        for k, v in e.items():
            if not k.startswith("_") and k not in obj:
                obj[k] = v
        return json.dumps(obj, ensure_ascii=False)

    lines = [render(e) for e in evs]
    # duplicates: the same id again a few lines later (sometimes with another payload)
    out = []
    pending = []
    for i, (e, line) in enumerate(zip(evs, lines)):
        out.append(line)
        if rng.random() < 0.05:
            if rng.random() < 0.35:
                e2 = dict(e)
                e2["_t"] = e["_t"] + HOUR
                if e["type"] == "activity.recorded":
                    e2["activity"] = "read" if e["activity"] != "read" else params["activities"][0]
                dup = render(e2)
            else:
                dup = line
            pending.append((i + rng.randint(0, 4), dup))
        for p in [p for p in pending if p[0] <= i]:
            out.append(p[1])
            pending.remove(p)
    out += [p[1] for p in pending]

    # malformed lines at random places; sometimes followed by a valid line with the same id
    for bad in malformed_lines(rng, g, days, params):
        pos = rng.randint(0, len(out))
        out.insert(pos, bad)
    if rng.random() < 0.5:
        d = rng.choice(days[1:6])
        pos = rng.randint(0, len(out))
        bad = json.dumps({"id": "retry-1", "type": "activity.recorded", "at": "2026-13-01T00:00:00+08:00",
                          "member": "m1", "activity": params["activities"][0]})
        good = json.dumps({"id": "retry-1", "type": "app.login", "at": g.fmt_at(g.local(d, 9)), "member": "m1"})
        out.insert(pos, good)
        out.insert(pos, bad)

    with open(args.out, "w", encoding="utf-8") as fh:
        for line in out:
            fh.write(line + "\n")

    max_t = max(e["_t"] for e in g.events)
    until = max_t + 25 * DAY
    # a mid-trace --until (events after it are not applied), on a close-like instant or not
    mid_day = days[len(days) // 2 + rng.randint(-3, 3)]
    mid = g.local(mid_day, *rng.choice([(0, 0, 0), (20, 0, 0), (13, 17, 5), (23, 59, 59)]))
    print(json.dumps({"until": clock.fmt(until), "until_mid": clock.fmt(mid),
                      "events": len(g.events), "lines": len(out)}))


if __name__ == "__main__":
    main()

"""Dashboard for heads: counts, loads, readiness, anomalies, peers, backlog, backups, SVG charts."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from markupsafe import Markup

import crdt_model as cm

from ._http import NODE_KEY
from ._node import Node
from ._replication import REPLICATION_KEY
from ._web_station import event_time
from ._web_support import bar_chart, row_chart

ZONES = ("sale", "propre", "sterile")
_KIND_ORDER = {"wash": 0, "steri": 1}
RECENT_SETS = 15
BACKUP_STATES = ("ok", "pending", "failing", "stale")
"""States of the scheduled backups (ScheduledBackups.status), each `backup.<state>` in the catalogs."""
BACKUP_ALERTS = frozenset({"failing", "stale"})
"""Backup states the dashboard shows as an alert."""
MAX_ZONES_KEPT = 100_000
"""Bound of the event id -> zone cache (about one entry per set in use)."""


def dashboard_context(request: web.Request, zones: dict[str, str]) -> dict[str, Any]:
    """Everything the dashboard body shows, from the node's fold (no I/O).

    `zones` caches the zone of the events read to place each set (ids never change meaning).
    """
    node = request.app[NODE_KEY]
    fold = node.trace.fold
    now_ms = node._clock()
    today = node.trace.today(now_ms)
    tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()

    views = [fold.set_status(code, today, events=False) for code in fold.set_codes()]
    placed: Counter[tuple[str, str]] = Counter((v.status, set_zone(node, v, zones)) for v in views)
    columns = [*ZONES, *sorted({z for _, z in placed} - set(ZONES))]
    matrix = {
        status: {zone: placed[status, zone] for zone in columns}
        for status in cm.SET_STATES
        if any(placed[status, zone] for zone in columns)
    }
    recent = [
        (v, event_time(node, v.since))
        for v in sorted(views, key=lambda v: v.since or "", reverse=True)[:RECENT_SETS]
    ]

    loads = [
        v
        for n in sorted(node.trace.loads_by_day.get(today, ()))
        if (v := fold.load(n, labels=False)) is not None and v.day == today
    ]
    per_machine: Counter[tuple[str, str]] = Counter(
        (v.kind or "", v.machine or "?") for v in loads if v.cycle is not None
    )

    # throughput: today's events per local hour and zone
    hours = [f"{h:02d}" for h in range(6, 22)]
    counts = {zone: [0] * len(hours) for zone in ZONES}
    tz = node.timezone
    activity = node.trace.activity.get(today, {})
    for zone in ZONES:
        per_hour = activity.get(zone, [0] * 24)
        counts[zone] = [per_hour[int(h)] for h in hours]

    readiness = {}
    if fold.reference is not None:
        for day in (today, tomorrow):
            readiness[day] = cm.readiness_from(fold, day, today, fold.reference)["rooms"]

    replication = request.app.get(REPLICATION_KEY)
    peers = [] if replication is None else [_peer_row(p, tz) for p in replication.peers()]
    backlog = max(node.index.count - len(node.trace.acked), 0)
    open_anomalies = fold.anomalies(open_only=True)

    return {
        "today": today,
        "tomorrow": tomorrow,
        "now": datetime.fromtimestamp(now_ms / 1000, tz).strftime("%d/%m/%Y %H:%M"),
        "set_total": len(views),
        "by_status": matrix,
        "zones": columns,
        "recent": recent,
        "loads": loads,
        "readiness": readiness,
        "anomalies": open_anomalies[:50],
        "anomaly_total": len(open_anomalies),
        "peers": peers,
        "sync": replication is not None,
        "backlog": backlog,
        "backup": backup_view(node),
        "backup_alerts": BACKUP_ALERTS,
        "hours": hours,
        "throughput": counts,
        "per_machine": per_machine,
        "chart": _charts,
    }


def backup_view(node: Node) -> dict[str, Any] | None:
    """How the node's scheduled backups go (Node.backup_status), for a page; None when off.

    Adds `every` (the period in hours, e.g. "24" or "0.5") and `megabytes` (of the last file).
    """
    if node.backup_status is None:
        return None
    status = dict(node.backup_status())
    every = status.get("every_hours")
    size = status.get("last_bytes")
    status["every"] = f"{every:g}" if isinstance(every, int | float) else ""
    status["megabytes"] = f"{size / 1e6:.1f}" if isinstance(size, int) else ""
    return status


def set_zone(node: Node, view: cm.SetView, zones: dict[str, str]) -> str:
    """The zone of the station that recorded the set's latest event ('' when none is known).

    The latest of the set's own events and the load event (cycle, decision) its status
    comes from; a voided event is not among them.
    """
    own = node.trace.fold.last_event(view.set)
    latest = max([*([own] if own else []), *([view.since] if view.since else [])], default=None)
    if latest is None:
        return ""
    zone = zones.get(latest)
    if zone is None:
        event = node.get_event(latest)
        zone = str(event.get("zone") or "") if event is not None else ""
        if len(zones) >= MAX_ZONES_KEPT:
            zones.clear()
        zones[latest] = zone
    return zone


def _peer_row(peer: dict[str, Any], tz: Any) -> dict[str, Any]:
    last = peer.get("last_sync")
    when = ""
    if isinstance(last, int | float) and last > 1e9:
        when = datetime.fromtimestamp(last, tz).strftime("%d/%m %H:%M:%S")
    return {
        "name": peer.get("name") or peer.get("code") or peer.get("node") or "?",
        "address": peer.get("address") or "",
        "state": str(peer.get("state") or ""),
        "last_sync": when,
        "behind": peer.get("behind"),
    }


def _charts(context: dict[str, Any], gettext: Any) -> dict[str, Markup]:
    """The two SVG charts, with labels in the page's language."""
    throughput = bar_chart(
        context["hours"],
        [(gettext("zone." + z), f"z-{z}", context["throughput"][z]) for z in ZONES],
        title=gettext("Throughput per hour and zone (events today)"),
    )
    # washers first, then sterilizers; one row each, however many machines there are
    machines = sorted(
        context["per_machine"].items(), key=lambda m: (_KIND_ORDER.get(m[0][0], 2), m[0])
    )
    kinds = [k for k in _KIND_ORDER if any(kind == k for (kind, _), _ in machines)]
    cycles = row_chart(
        [(machine, f"k-{kind or 'other'}", n) for (kind, machine), n in machines]
        or [("-", "k-other", 0)],
        [(gettext("kind." + k), f"k-{k}") for k in kinds],
        title=gettext("Cycles per machine today"),
    )
    return {"throughput": Markup(throughput), "cycles": Markup(cycles)}  # noqa: S704 (escaped inside)

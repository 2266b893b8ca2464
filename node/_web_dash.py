"""Dashboard for heads: counts, loads, readiness, anomalies, peers, backlog, SVG charts."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from markupsafe import Markup

import crdt_model as cm

from ._http import NODE_KEY
from ._replication import REPLICATION_KEY
from ._web_station import ZONE_OF_STATUS, event_time
from ._web_support import bar_chart

ZONES = ("sale", "propre", "sterile")
RECENT_SETS = 15


def dashboard_context(request: web.Request) -> dict[str, Any]:
    """Everything the dashboard body shows, from the node's fold (no I/O)."""
    node = request.app[NODE_KEY]
    fold = node.trace.fold
    now_ms = node._clock()
    today = node.trace.today(now_ms)
    tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()

    views = [fold.set_status(code, today) for code in fold.set_codes()]
    by_status: Counter[str] = Counter(v.status for v in views)
    matrix = {
        status: {
            zone: (by_status[status] if ZONE_OF_STATUS.get(status) == zone else 0) for zone in ZONES
        }
        for status in cm.SET_STATES
        if by_status[status]
    }
    recent = [
        (v, event_time(node, v.since))
        for v in sorted(views, key=lambda v: v.since or "", reverse=True)[:RECENT_SETS]
    ]

    loads = [
        v
        for n in sorted(node.trace.loads_by_day.get(today, ()))
        if (v := fold.load(n)) is not None and v.day == today
    ]
    per_machine: Counter[str] = Counter(v.machine or "?" for v in loads if v.cycle is not None)

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
            readiness[day] = cm.readiness(fold, day, fold.reference)["rooms"]

    replication = request.app.get(REPLICATION_KEY)
    peers = [] if replication is None else [_peer_row(p, tz) for p in replication.peers()]
    backlog = max(node.index.count - len(node.trace.acked), 0)

    return {
        "today": today,
        "tomorrow": tomorrow,
        "now": datetime.fromtimestamp(now_ms / 1000, tz).strftime("%d/%m/%Y %H:%M"),
        "set_total": len(views),
        "by_status": matrix,
        "zones": ZONES,
        "recent": recent,
        "loads": loads,
        "readiness": readiness,
        "anomalies": fold.anomalies(open_only=True)[:50],
        "peers": peers,
        "sync": replication is not None,
        "backlog": backlog,
        "hours": hours,
        "throughput": counts,
        "per_machine": per_machine,
        "chart": _charts,
    }


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
    machines = sorted(context["per_machine"].items())
    cycles = bar_chart(
        [m for m, _ in machines] or ["-"],
        [(gettext("Cycles"), "z-cycles", [n for _, n in machines] or [0])],
        title=gettext("Cycles per machine today"),
        width=420,
    )
    return {"throughput": Markup(throughput), "cycles": Markup(cycles)}  # noqa: S704 (escaped inside)

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import crdt_model as cm
from node import Node, make_app
from node._auth import Principal
from node._sample import write_sample
from node._user_records import user_records
from tests.helpers import submission
from tests.node.nodes import StepClock, new_data_dir, open_node

ERROR_KEYS = {"ok", "error", "errors", "status"}


class Api:
    """A test client for one node, with a token per role."""

    def __init__(self, client: TestClient, node: Node, tokens: dict[str, str]) -> None:
        self.client = client
        self.node = node
        self.tokens = tokens

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(
        self, method: str, path: str, role: str | None = "operator", **kw: Any
    ) -> tuple[int, Any]:
        resp = await self.client.request(method, path, headers=self.headers(role), **kw)
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()

    async def post_event(self, role: str = "operator", **body: Any) -> tuple[int, Any]:
        return await self.call("POST", "/api/events", role, json=body)


@pytest.fixture
async def api(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Api]:
    node = await open_node(new_data_dir(tmp_path), clock=StepClock(step=1000))
    tokens = {}
    for role in ("operator", "releaser", "head", "admin", "integration"):
        tokens[role] = await node.async_create_token(f"t-{role}", role, "test")
    client = await aiohttp_client(make_app(node))
    yield Api(client, node, tokens)
    await node.async_close()


def assert_error_shape(status: int, body: Any, expected: int) -> None:
    assert status == expected
    assert set(body) == ERROR_KEYS
    assert body["ok"] is False
    assert body["status"] == expected
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["errors"], list)


async def test_health_is_open(api: Api) -> None:
    status, body = await api.call("GET", "/api/health", None)
    assert status == 200
    assert body == {"ok": True, "node": "A", "name": "Poste test", "version": body["version"]}


async def test_no_token_is_401_in_the_error_shape(api: Api) -> None:
    status, body = await api.call("POST", "/api/events", None, json=submission("note"))
    assert_error_shape(status, body, 401)
    assert api.node.index.count == 0


async def test_unknown_token_is_401(api: Api) -> None:
    resp = await api.client.get("/api/events", headers={"Authorization": "Bearer smt_nope"})
    assert_error_shape(resp.status, await resp.json(), 401)


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("head", "POST", "/api/events", submission("note")),
        ("integration", "POST", "/api/events", submission("note")),
        ("operator", "POST", "/api/events", submission("load.released")),
        ("operator", "POST", "/api/events", submission("anomaly.resolved")),
        ("operator", "POST", "/api/tokens", {"name": "x", "role": "admin"}),
        ("releaser", "POST", "/api/users", {"login": "x", "role": "admin", "password": "12345678"}),
        ("operator", "POST", "/api/reference", None),
    ],
)
async def test_role_that_may_not_gets_403(
    api: Api, role: str, method: str, path: str, body: Any
) -> None:
    status, answer = await api.call(method, path, role, json=body)
    assert_error_shape(status, answer, 403)
    assert api.node.index.count == 0


async def test_the_platforms_token_reads_the_feed_and_nothing_else(api: Api) -> None:
    status, _ = await api.post_event(**submission("set.received"))
    assert status == 201
    resp = await api.client.get(
        "/api/feed", headers={"Authorization": f"Bearer {api.tokens['integration']}"}
    )
    assert resp.status == 200
    assert b'"set.received"' in await resp.read()
    for path in (
        "/api/events",
        "/api/status",
        "/api/sets/JDIGGRBA%23111",
        "/api/anomalies",
        "/api/recall?patient=000211553",
        "/api/readiness?date=2026-12-01",
        "/api/peers",
        "/api/nodes",
        "/metrics",
    ):
        status, answer = await api.call("GET", path, "integration")
        assert_error_shape(status, answer, 403)
        status, _ = await api.call("GET", path, "head")
        assert status != 403, path  # people who read may (200, or 404/409 for this empty node)


async def test_an_admin_revokes_a_token_and_disables_a_user(api: Api) -> None:
    status, made = await api.call(
        "POST", "/api/tokens", "admin", json={"name": "xline", "role": "integration"}
    )
    assert status == 201
    leaked = {"Authorization": f"Bearer {made['token']}"}
    assert (await api.client.get("/api/feed", headers=leaked)).status == 200
    status, body = await api.call("POST", "/api/tokens/xline/revoke", "operator")
    assert_error_shape(status, body, 403)
    status, body = await api.call("POST", "/api/tokens/xline/revoke", "admin")
    assert (status, body) == (200, {"name": "xline", "revoked": 1})
    assert (await api.client.get("/api/feed", headers=leaked)).status == 401
    status, body = await api.call("POST", "/api/tokens/xline/revoke", "admin")
    assert_error_shape(status, body, 400)  # none left in use
    await api.node.async_add_user("mdupont", "operator", "a password 123", "test")
    status, body = await api.call("POST", "/api/users/mdupont/disable", "admin")
    assert (status, body) == (200, {"login": "mdupont", "disabled": True})
    users = user_records(api.node.docs[cm.CLUSTER_DOC])
    assert users["mdupont"]["disabled"] is True
    await api.node.async_add_user("mdupont", "releaser", "another password", "test")
    users = user_records(api.node.docs[cm.CLUSTER_DOC])
    assert users["mdupont"]["disabled"] is True  # a new password or role does not re-enable
    status, _ = await api.call("POST", "/api/users/mdupont/enable", "admin")
    assert status == 200
    assert "disabled" not in user_records(api.node.docs[cm.CLUSTER_DOC])["mdupont"]
    status, body = await api.call("POST", "/api/users/nobody/disable", "admin")
    assert_error_shape(status, body, 400)


async def test_event_is_answered_201_with_id_and_hlc(api: Api) -> None:
    status, body = await api.post_event(**submission("set.received"))
    assert status == 201
    assert set(body) == {"id", "hlc"}
    assert re.fullmatch(r"\d{13}-\d{5}-A", body["id"])
    assert body["id"].startswith(body["hlc"])
    event = api.node.get_event(body["id"])
    assert event is not None
    assert event["user"] == "t-operator"
    assert event["zone"] == "sale"  # the node's zone by default
    assert event["set"] == "JDIGGRBA#111"


async def test_every_event_type_is_accepted_by_its_role(api: Api) -> None:
    from crdt_model import EVENT_TYPES

    ruled = {"load.released", "label.printed", "set.used", "anomaly.resolved", "event.voided"}
    for event_type in sorted(set(EVENT_TYPES) - ruled):
        role = {"load.released": "releaser", "anomaly.resolved": "head"}.get(event_type, "operator")
        body = submission(event_type)
        status, answer = await api.post_event(role, **body)
        assert status == 201, (event_type, answer)


async def test_loaded_events_get_load_numbers(api: Api) -> None:
    numbers = []
    for kind in ("wash.loaded", "steri.loaded", "wash.loaded"):
        status, body = await api.post_event(**submission(kind))
        assert status == 201
        numbers.append(body["load"])
    day = api.node.get_event(
        (await api.call("GET", "/api/events?type=wash.loaded"))[1]["events"][0]["id"]
    )["at"]
    yymmdd = day[2:4] + day[5:7] + day[8:10]
    assert numbers == [f"A-{yymmdd}-001", f"A-{yymmdd}-002", f"A-{yymmdd}-003"]


async def test_a_load_number_is_given_once(api: Api) -> None:
    status, _ = await api.post_event(**submission("steri.loaded", load="A-261128-007"))
    assert status == 201
    status, body = await api.post_event(**submission("steri.loaded", load="A-261128-007"))
    assert_error_shape(status, body, 409)
    assert api.node.index.count == 1


async def test_invalid_event_is_422_with_one_error_per_field(api: Api) -> None:
    status, body = await api.post_event(type="wash.cycle", machine="LAV-1", result="maybe", hlc="x")
    assert_error_shape(status, body, 422)
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"cycle_no", "result", "hlc"}
    assert api.node.index.count == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 422),
        (b'"text"', 422),
        (b"x" * (1024 * 1024 + 10), 413),
        (b"[" * 100_000, 400),  # too deep to parse: a plain refusal, not a traceback
    ],
)
async def test_bad_bodies(api: Api, raw: bytes, expected: int) -> None:
    status, body = await api.call("POST", "/api/events", data=raw)
    assert_error_shape(status, body, expected)
    assert api.node.index.count == 0


async def test_unknown_endpoint_and_method_use_the_error_shape(api: Api) -> None:
    status, body = await api.call("GET", "/api/nothing-here")
    assert_error_shape(status, body, 404)
    status, body = await api.call("DELETE", "/api/events")
    assert_error_shape(status, body, 405)


async def test_events_query_filters_and_pages(api: Api) -> None:
    ids = []
    for i in range(7):
        kind = "set.received" if i % 2 == 0 else "note"
        body = submission(kind, set=f"S{i % 3}") if kind == "set.received" else submission(kind)
        ids.append((await api.post_event(**body))[1]["id"])
    status, page = await api.call("GET", "/api/events?limit=3")
    assert status == 200
    assert [e["id"] for e in page["events"]] == ids[:3]
    assert page["next"] == ids[2]
    status, page2 = await api.call("GET", f"/api/events?limit=3&after={page['next']}")
    assert [e["id"] for e in page2["events"]] == ids[3:6]
    status, last = await api.call("GET", f"/api/events?limit=3&after={page2['next']}")
    assert [e["id"] for e in last["events"]] == ids[6:]
    assert last["next"] is None
    status, notes = await api.call("GET", "/api/events?type=note")
    assert [e["id"] for e in notes["events"]] == ids[1::2]
    status, by_set = await api.call("GET", "/api/events?set=S0")
    assert [e["id"] for e in by_set["events"]] == [ids[0], ids[6]]
    day = api.node.index.days()[0]
    status, by_day = await api.call("GET", f"/api/events?day={day}&type=set.received")
    assert [e["id"] for e in by_day["events"]] == ids[0::2]
    status, none = await api.call("GET", "/api/events?day=1999-01-01")
    assert none["events"] == []


@pytest.mark.parametrize(
    "query",
    ["day=28-11-2026", "type=set.lost", "after=yesterday", "limit=0", "limit=5000", "limit=abc"],
)
async def test_bad_query_parameters_are_400(api: Api, query: str) -> None:
    status, body = await api.call("GET", f"/api/events?{query}")
    assert_error_shape(status, body, 400)
    assert len(body["errors"]) == 1


async def test_single_event_lookup(api: Api) -> None:
    _, created = await api.post_event(**submission("note"))
    status, event = await api.call("GET", f"/api/events/{created['id']}", "head")
    assert status == 200
    assert event["id"] == created["id"]
    status, body = await api.call("GET", "/api/events/1795869091234-00000-Z", "head")
    assert_error_shape(status, body, 404)


async def test_metrics_need_a_token_and_count_events(api: Api) -> None:
    resp = await api.client.get("/metrics")
    assert resp.status == 401
    await api.post_event(**submission("note"))
    status, text = await api.call("GET", "/metrics", "head")
    assert status == 200
    assert 'sterimesh_events_recorded_total{type="note"} 1.0' in text
    assert "sterimesh_commit_seconds_bucket" in text
    assert "sterimesh_events 1.0" in text


async def test_reference_upload_imports_a_zip(api: Api, tmp_path: Path) -> None:
    folder = write_sample(tmp_path / "bundle", scale="small", seed=3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for item in sorted(folder.iterdir()):
            zf.write(item, item.name)
    status, body = await api.call("POST", "/api/reference", "integration", data=buf.getvalue())
    assert status == 201, body
    assert body["status"] == "imported"
    assert api.node.current_reference()["export_id"] == body["export_id"]
    status, again = await api.call("POST", "/api/reference", "integration", data=buf.getvalue())
    assert status == 200
    assert again["status"] == "unchanged"


async def test_broken_reference_upload_is_refused_and_changes_nothing(api: Api) -> None:
    status, body = await api.call("POST", "/api/reference", "admin", data=b"PK\x03\x04garbage")
    assert_error_shape(status, body, 422)
    assert api.node.references() == []


async def test_admin_creates_tokens_that_work(api: Api) -> None:
    status, body = await api.call(
        "POST", "/api/tokens", "admin", json={"name": "lims", "role": "integration"}
    )
    assert status == 201
    resp = await api.client.get("/api/feed", headers={"Authorization": f"Bearer {body['token']}"})
    assert resp.status == 200
    status, bad = await api.call("POST", "/api/tokens", "admin", json={"name": "x", "role": "king"})
    assert_error_shape(status, bad, 422)
    # what cycle capture records as is not a name a token may take
    status, bad = await api.call(
        "POST", "/api/tokens", "admin", json={"name": "device:AUTO-2", "role": "operator"}
    )
    assert_error_shape(status, bad, 422)
    assert "device:" in bad["error"]


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        # half a surrogate pair is valid JSON but no text: 400, not a 500 when stored
        ("POST", "/api/events", {"data": b'{"type": "note", "text": "\\ud800"}'}),
        (
            "POST",
            "/api/users",
            {"data": b'{"login": "bob", "role": "operator", "password": "\\udfff"}'},
        ),
        # characters that are digits to str.isdigit but no number
        ("GET", "/api/feed?limit=%C2%B2", {}),
        ("GET", "/api/events?day=2026-13-45", {}),
        ("GET", "/api/events?day=2026-11-28%0A", {}),
        ("GET", "/api/readiness?date=2026-02-30", {}),
    ],
)
async def test_odd_input_is_one_clear_400_and_changes_nothing(
    api: Api, method: str, path: str, kw: dict[str, Any]
) -> None:
    headers = {**api.headers("admin"), "Content-Type": "application/json"}
    resp = await api.client.request(method, path, headers=headers, **kw)
    assert_error_shape(resp.status, await resp.json(), 400)
    assert api.node.index.count == 0


@pytest.mark.parametrize("value", ["bob\n", "Bob", "bob bob"])
async def test_a_login_with_a_trailing_newline_is_refused(api: Api, value: str) -> None:
    body = {"login": value, "role": "operator", "password": "correct horse battery"}
    status, answer = await api.call("POST", "/api/users", "admin", json=body)
    assert_error_shape(status, answer, 422)


async def test_a_patient_code_with_a_trailing_newline_is_refused(api: Api) -> None:
    status, body = await api.post_event(type="set.used", set="JX#1", patient="000123\n")
    assert_error_shape(status, body, 422)
    assert api.node.index.count == 0


async def test_a_node_never_stores_an_event_its_peers_would_refuse(api: Api) -> None:
    """An event signed with a name peers refuse (a control character) would never leave the
    node and would hold back its day's later changes: refused whole, nothing stored. Such a
    token cannot be made any more either."""
    status, body = await api.call(
        "POST", "/api/tokens", "admin", json={"name": "scanner\x07one", "role": "operator"}
    )
    assert_error_shape(status, body, 422)
    before = api.node.index.count
    with pytest.raises(cm.EventError):
        await api.node.async_record({"type": "note", "text": "x"}, Principal("a\x07b", "operator"))
    assert api.node.index.count == before
    status, created = await api.post_event(type="note", text="bonjour")
    assert status == 201
    stored = api.node.get_event(created["id"])
    assert cm.validate_event(stored) == stored  # what a peer checks of it

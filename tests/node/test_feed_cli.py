"""`sterimesh feed`: JSON lines and CSV per type, node stopped or running; docs/FEED.md's schemas.

Run `python -m tests.node.test_feed_cli` to print the generated part of docs/FEED.md.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

import crdt_model as cm
from node import DataDir, NodeServer, make_app
from node import _feed_cli as feed_cli
from node._auth import Principal
from node._bundle import read_bundle
from node._cli import cli
from node._sample import write_sample
from tests.node.nodes import StepClock, new_data_dir, open_node
from tests.procs import _env, sterimesh_command

DOC = Path(__file__).parents[2] / "docs" / "FEED.md"
BEGIN = "<!-- schemas:begin"
END = "<!-- schemas:end -->"
BOM = b"\xef\xbb\xbf"

OPERATOR = Principal(name="hélène.m", role="operator")
RELEASER = Principal(name="jdurand", role="releaser")


@dataclass
class Fed:
    """A stopped node's data directory and what its API answered before it stopped."""

    data: Path
    ids: list[str]
    events: list[dict[str, Any]]
    feed: bytes
    after: bytes
    unacked: bytes


async def _record(data: DataDir, bundle_dir: Path) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    node = await open_node(data, clock=StepClock(step=1000))
    try:
        await node.async_import(read_bundle(bundle_dir))
        ref = node.trace.fold.reference
        assert ref is not None
        code = next(iter(ref.instance_type))  # the first instance of the sample

        async def submit(principal: Principal = OPERATOR, **body: Any) -> dict[str, Any]:
            event, _ = await node.async_submit(body, principal)
            return event

        await submit(type="note", text='Panne du laveur LAV-2, "urgent".\r\nRetour prévu 14h.')
        await submit(type="set.received", set=code, missing=["PINCE KOCHER", "VALVE LERICHE"])
        await submit(type="wash.loaded", machine="LAV-1", program="INSTRU 93°C", sets=[code])
        await submit(
            type="wash.cycle",
            machine="LAV-1",
            cycle_no=4711,
            result="pass",
            a0=3000,
            params={"t_max": 93.4, "ok": True},
            raw="CYCLE 4711\r\nRESULT OK\r\n",
        )
        await submit(type="set.inspected", set=code, result="ok", packer="Hélène Martin")
        await submit(type="steri.test", machine="AUTO-1", kind="bowie_dick", result="pass")
        load = (
            await submit(type="steri.loaded", machine="AUTO-1", program="NORMAL 134°", sets=[code])
        )["load"]
        await submit(
            type="steri.cycle",
            machine="AUTO-1",
            load=load,
            cycle_no="00815",
            result="pass",
            phases=[{"name": "plateau", "t_min": 134.1}],
            hold_s=300,
        )
        await submit(RELEASER, type="load.released", load=load, decision="released")
        await node.async_issue_label(code, load, OPERATOR)
        await node.async_issue_label(code, load, OPERATOR)  # a reprint
        await submit(type="set.dispatched", set=code, to="Bloc J — salle 3")
        await submit(type="set.used", set=code, patient="000501492", room="J Salle 3")
        await submit(type="endo.used", endoscope="GIF-H190-2101234", patient="000501493")
        events = list(node.iter_events())
        await node.async_ack([e["id"] for e in events[:5]], "platform")
        answers = {}
        token = await node.async_create_token("platform", "integration", "test")
        async with TestClient(TestServer(make_app(node))) as client:
            for key, query in (
                ("feed", "limit=10000"),
                ("after", f"after={events[6]['id']}"),
                ("unacked", "unacked=1"),
            ):
                resp = await client.get(
                    f"/api/feed?{query}", headers={"Authorization": f"Bearer {token}"}
                )
                assert resp.status == 200
                answers[key] = await resp.read()
        return events, answers
    finally:
        await node.async_close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    base = tmp_path_factory.mktemp("feedcli")
    bundle = write_sample(base / "bundle", scale="small", seed=2, start=date(2026, 11, 30))
    data = new_data_dir(base)
    events, answers = asyncio.run(_record(data, bundle))
    return Fed(data.root, [e["id"] for e in events], events, **answers)


def invoke(*args: str | Path) -> tuple[int, bytes, str]:
    """Run the feed command (through the `sterimesh` group once it is registered there)."""
    argv = [str(a) for a in args]
    if "feed" in getattr(cli, "commands", {}):
        result = CliRunner().invoke(cli, ["feed", *argv])
    else:
        result = CliRunner().invoke(feed_cli.feed, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def csv_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- JSON lines ---------------------------------------------------------------------------


def test_jsonl_of_a_stopped_node_is_the_api_feed_byte_for_byte(fed: Fed, tmp_path: Path) -> None:
    code, out, err = invoke("--data", fed.data)
    assert code == 0, err
    assert out == fed.feed
    assert out == cm.feed_bytes(fed.events)
    assert [json.loads(line)["id"] for line in out.splitlines()] == fed.ids
    assert "prévu".encode() in out
    assert err == ""
    target = tmp_path / "feed.jsonl"
    code, out, err = invoke("--data", fed.data, "--format", "jsonl", "--out", target)
    assert code == 0, err
    assert out == b""
    assert target.read_bytes() == fed.feed
    assert f"feed: {len(fed.ids)} events written to {target}" in err
    assert [p.name for p in tmp_path.iterdir()] == ["feed.jsonl"]  # no temporary file left


def test_after_and_unacked_are_those_of_the_api(fed: Fed) -> None:
    code, out, err = invoke("--data", fed.data, "--after", fed.ids[6])
    assert code == 0, err
    assert out == fed.after
    assert [json.loads(line)["id"] for line in out.splitlines()] == fed.ids[7:]
    code, out, err = invoke("--data", fed.data, "--unacked")
    assert code == 0, err
    assert out == fed.unacked
    assert [json.loads(line)["id"] for line in out.splitlines()] == fed.ids[5:]
    code, out, _ = invoke("--data", fed.data, "--unacked", "--after", fed.ids[-2])
    assert [json.loads(line)["id"] for line in out.splitlines()] == fed.ids[-1:]
    code, out, _ = invoke("--data", fed.data, "--after", fed.ids[-1])
    assert (code, out) == (0, b"")


def test_progress_on_stderr_for_long_feeds(fed: Fed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_cli, "PROGRESS_EVERY", 4)
    code, out, err = invoke("--data", fed.data)
    assert code == 0
    assert out == fed.feed
    steps = [n for n in range(4, len(fed.ids) + 1, 4)]
    assert err.splitlines() == [f"feed: {n} events..." for n in steps]


# -- CSV per event type --------------------------------------------------------------------


def test_csv_gives_one_file_per_type_present_utf8_with_bom(fed: Fed, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    code, stdout, err = invoke("--data", fed.data, "--format", "csv", "--out", out)
    assert code == 0, err
    assert stdout == b""
    types = sorted({e["type"] for e in fed.events})
    files = csv_files(out)
    assert sorted(files) == [f"{t}.csv" for t in types]
    for kind in types:
        raw = files[f"{kind}.csv"]
        assert raw.startswith(BOM)
        assert raw[len(BOM) :].decode("utf-8") == cm.feed_csv(fed.events, kind)
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
        assert tuple(rows[0]) == cm.csv_columns(kind)
        mine = [e for e in fed.events if e["type"] == kind]
        assert [r[0] for r in rows[1:]] == [e["id"] for e in mine]
    note = list(csv.DictReader(io.StringIO(files["note.csv"].decode("utf-8-sig"), newline="")))
    assert note[0]["text"] == 'Panne du laveur LAV-2, "urgent".\r\nRetour prévu 14h.'
    assert note[0]["station"] == ""
    labels = list(
        csv.DictReader(io.StringIO(files["label.printed.csv"].decode("utf-8-sig"), newline=""))
    )
    assert [row["reprint"] for row in labels] == ["false", "true"]
    received = next(
        csv.DictReader(io.StringIO(files["set.received.csv"].decode("utf-8-sig"), newline=""))
    )
    assert json.loads(received["missing"]) == ["PINCE KOCHER", "VALVE LERICHE"]
    inspected = next(
        csv.DictReader(io.StringIO(files["set.inspected.csv"].decode("utf-8-sig"), newline=""))
    )
    assert (inspected["packer"], inspected["user"]) == ("Hélène Martin", "hélène.m")


def test_csv_in_chunks_is_the_same_and_a_new_export_replaces_the_old_one(
    fed: Fed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    assert invoke("--data", fed.data, "--format", "csv", "--out", whole)[0] == 0
    monkeypatch.setattr(feed_cli, "CSV_CHUNK", 1)
    chunked = tmp_path / "chunked"
    assert invoke("--data", fed.data, "--format", "csv", "--out", chunked)[0] == 0
    assert csv_files(chunked) == csv_files(whole)
    # the next export into the same folder: only the types of its events are left
    (whole / "notes-perso.txt").write_text("à garder")
    code, _, err = invoke(
        "--data", fed.data, "--format", "csv", "--out", whole, "--after", fed.ids[-3]
    )
    assert code == 0, err
    kinds = sorted({e["type"] for e in fed.events[-2:]})
    assert sorted(csv_files(whole)) == sorted([f"{k}.csv" for k in kinds] + ["notes-perso.txt"])
    for kind in kinds:
        expected = cm.feed_csv(fed.events[-2:], kind)
        assert (whole / f"{kind}.csv").read_bytes() == BOM + expected.encode()


# -- usage and errors -------------------------------------------------------------------------


def test_usage_errors_exit_2_and_bad_data_exits_1(fed: Fed, tmp_path: Path) -> None:
    code, _, err = invoke("--data", fed.data, "--format", "csv")
    assert code == 2
    assert "--out" in err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, _, err = invoke("--data", fed.data, "--format", "csv", "--out", a_file)
    assert code == 2
    assert "folder" in err
    code, _, err = invoke("--data", fed.data, "--out", tmp_path)
    assert code == 2
    code, _, err = invoke("--data", fed.data, "--out", tmp_path / "nowhere" / "feed.jsonl")
    assert code == 2
    code, _, err = invoke("--data", fed.data, "--after", "yesterday")
    assert code == 2
    assert "event id" in err
    code, _, err = invoke("--data", fed.data, "--format", "xml")
    assert code == 2
    out = tmp_path / "feed.jsonl"
    code, _, err = invoke("--data", tmp_path / "no-node", "--out", out)
    assert code == 1
    assert "sterimesh init" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing half-written


def test_a_folder_without_a_node_is_left_as_it_was(tmp_path: Path) -> None:
    code, _, err = invoke("--data", tmp_path)
    assert code == 1
    assert "sterimesh init" in err
    assert list(tmp_path.iterdir()) == []  # no store, no lock: `restore` can still use it


def test_an_output_that_cannot_be_written_is_one_clear_error(fed: Fed, tmp_path: Path) -> None:
    # /proc takes no new file, not even from root
    for args in (("--out", "/proc/feed.jsonl"), ("--format", "csv", "--out", "/proc/feed")):
        code, _, err = invoke("--data", fed.data, *args)
        assert code == 1
        assert "--out /proc/feed" in err
        assert len(err.strip().splitlines()) == 1  # no traceback
    result = CliRunner().invoke(cli, ["sample-data", "--out", "/proc/bundle"])
    assert result.exit_code == 1
    assert "/proc/bundle" in result.output
    assert "Traceback" not in result.output


def test_files_are_for_their_owner_only(fed: Fed, tmp_path: Path) -> None:
    target = tmp_path / "feed.jsonl"
    assert invoke("--data", fed.data, "--out", target)[0] == 0
    assert target.stat().st_mode & 0o777 == 0o600
    assert invoke("--data", fed.data, "--format", "csv", "--out", tmp_path / "csv")[0] == 0
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "csv").iterdir()} == {0o600}


# -- with the node running ---------------------------------------------------------------------


class Served:
    """A node serving a data directory (HTTP on a free port, control socket) in a thread."""

    def __init__(self, data: Path) -> None:
        self.server = NodeServer(DataDir(data), listen=("127.0.0.1", 0))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="served-node")

    current: Served | None = None
    """The one serving now (a test may make it hang)."""

    def __enter__(self) -> Served:
        Served.current = self
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.async_start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.async_stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()


@pytest.fixture
def served(fed: Fed, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "n"  # short: the control socket's path has a length limit
    shutil.copytree(fed.data, copy)
    with Served(copy):
        assert DataDir(copy).is_served()
        yield copy


def test_through_a_running_node_page_by_page(
    fed: Fed, served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = tmp_path / "csv-offline"
    assert invoke("--data", fed.data, "--format", "csv", "--out", offline)[0] == 0
    monkeypatch.setattr(feed_cli, "_from_store", None)  # the store is the running node's
    monkeypatch.setattr(feed_cli, "PAGE", 4)
    monkeypatch.setattr(feed_cli, "PROGRESS_EVERY", 5)
    code, out, err = invoke("--data", served)
    assert code == 0, err
    assert out == fed.feed
    assert err.splitlines() == [f"feed: {n} events..." for n in range(5, len(fed.ids) + 1, 5)]
    code, out, _ = invoke("--data", served, "--after", fed.ids[6])
    assert out == fed.after
    code, out, _ = invoke("--data", served, "--unacked")
    assert out == fed.unacked
    folder = tmp_path / "csv-running"
    code, _, err = invoke("--data", served, "--format", "csv", "--out", folder)
    assert code == 0, err
    assert csv_files(folder) == csv_files(offline)


def test_an_export_stopped_by_sigterm_leaves_no_file_behind(served: Path, tmp_path: Path) -> None:
    """A service stopped or a terminal closed mid-export: the unfinished file, which holds
    patient codes, is removed (as with Ctrl+C). The node is made to hang, so the export is
    caught waiting for a page."""
    hang = threading.Event()
    server = Served.current
    assert server is not None
    server.loop.call_soon_threadsafe(hang.wait, 30)
    target = tmp_path / "feed.jsonl"
    export = subprocess.Popen(
        [*sterimesh_command(), "feed", "--data", str(served), "--out", str(target)],
        env=_env(),
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not list(tmp_path.glob(".feed.jsonl.*.tmp")):
            assert time.monotonic() < deadline, "the export never started its file"
            assert export.poll() is None
            time.sleep(0.02)
        export.send_signal(signal.SIGTERM)
        assert export.wait(20) == 128 + signal.SIGTERM
    finally:
        hang.set()
        if export.poll() is None:
            export.kill()
            export.wait()
    assert list(tmp_path.glob(".feed.jsonl.*")) == []
    assert not target.exists()


def test_a_page_size_of_exactly_the_feed_ends_on_an_empty_page(
    fed: Fed, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_cli, "_from_store", None)
    monkeypatch.setattr(feed_cli, "PAGE", len(fed.ids))
    code, out, err = invoke("--data", served)
    assert code == 0, err
    assert out == fed.feed


# -- docs/FEED.md -------------------------------------------------------------------------------


def generated_section() -> str:
    """The part of docs/FEED.md made from the code: columns and JSON Schema of each type."""
    parts = []
    for name, schema in cm.event_json_schemas().items():
        columns = ", ".join(cm.csv_columns(name))
        text = json.dumps(schema, indent=2, ensure_ascii=False)
        parts.append(f"### `{name}`\n\nCSV columns: {columns}\n\n```json\n{text}\n```\n")
    return "\n".join(parts)


def test_feed_md_holds_exactly_the_schemas_the_code_generates() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    inside = text.split(BEGIN, 1)[1].split("-->", 1)[1].split(END, 1)[0]
    found = {
        json.loads(block)["title"]: json.loads(block)
        for block in re.findall(r"```json\n(.*?)\n```", inside, flags=re.DOTALL)
    }
    assert found == cm.event_json_schemas()
    assert inside.strip() == generated_section().strip(), (
        "docs/FEED.md is out of date: regenerate its schemas with "
        "`python -m tests.node.test_feed_cli`"
    )


def test_every_fed_event_matches_its_documented_schema(fed: Fed) -> None:
    """A small check of the schemas against real events (required, types, no extra field)."""
    schemas = cm.event_json_schemas()
    kinds = {"string": str, "number": (int, float), "boolean": bool, "array": list, "object": dict}
    for event in fed.events:
        schema = schemas[event["type"]]
        assert set(schema["required"]) <= set(event), event
        assert set(event) <= set(schema["properties"]), event
        for key, value in event.items():
            prop = schema["properties"][key]
            if "type" in prop:
                assert isinstance(value, kinds[prop["type"]]), (key, value)
            if "pattern" in prop:
                assert re.search(prop["pattern"], value), (key, value)
            if "enum" in prop:
                assert value in prop["enum"]
            if "const" in prop:
                assert value == prop["const"]


if __name__ == "__main__":
    print(generated_section(), end="")

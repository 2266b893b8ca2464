"""`sterimesh backup`, `verify-backup` and `restore` (logic in node/_backup.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import click
import lmdb

import crdt_model as cm

from ._backup import (
    BackupError,
    Checked,
    check_backup,
    node_info,
    restore,
    snapshot,
    write_backup,
    write_file,
)
from ._layout import CONTROL_URL, DataDir, DataDirError, control_session, not_answering
from ._node import Node, NodeError
from ._store import StoreError


def _progress(what: str, done: int, total: int) -> None:
    step = max(1, total // 10)
    if done == total or done % step == 0:
        click.echo(f"  {what} {done}/{total} documents", err=True)


async def _offline_backup(data: DataDir) -> bytes:
    node = Node(data)
    await node.async_open(readonly=True)
    try:
        docs, info = snapshot(node), node_info(node)
    finally:
        await node.async_close()
    return await asyncio.to_thread(write_backup, info, docs, _progress)


async def _served_backup(data: DataDir) -> bytes:
    """GET /api/backup from the node serving `data`, over its control socket, with progress."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with control_session(data, timeout=timeout) as session:
        try:
            click.echo("  the running node is writing the backup...", err=True)
            async with session.get(CONTROL_URL + "/api/backup") as resp:
                if resp.status != 200:
                    raise BackupError(await _refusal(resp))
                total = resp.content_length or 0
                chunks: list[bytes] = []
                got = shown = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    chunks.append(chunk)
                    got += len(chunk)
                    if total and (got == total or got - shown >= total // 10):
                        shown = got
                        click.echo(f"  received {got // 1024:,}/{total // 1024:,} KiB", err=True)
                return b"".join(chunks)
        except aiohttp.ClientError as err:
            raise BackupError(not_answering(data, err)) from None


async def _refusal(resp: aiohttp.ClientResponse) -> str:
    """What a node's error answer says (its JSON error, else its status)."""
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error)[:300] if error else f"the node answered HTTP {resp.status}"


def _show(summary: dict[str, Any]) -> str:
    return (
        f"{summary['events']:,} events over {summary['days']} day"
        f"{'' if summary['days'] == 1 else 's'} "
        f"({summary['first_day'] or '-'} to {summary['last_day'] or '-'}), "
        f"{summary['references']} reference exports, {summary['members']} nodes, "
        f"{summary['users']} users; made {summary['created_at']} by node "
        f"{summary['node'].get('code')} ({summary['node'].get('name')})"
    )


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The backup file.")
def backup(data_dir: Path, out: Path) -> None:
    """Write every document of the node to one backup file (the node may be running)."""
    data = DataDir(data_dir)
    try:
        raw = asyncio.run(_served_backup(data) if data.is_served() else _offline_backup(data))
        checked: list[Checked] = []

        def read_back(written: Path) -> None:
            click.echo(f"  reading {out} back to check it", err=True)
            checked.append(check_backup(written, _progress))

        write_file(out, raw, read_back)  # an earlier backup of that name stays unless it passed
        summary = checked[0].summary()
    except (BackupError, StoreError, DataDirError, NodeError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"backup written to {out} ({len(raw):,} bytes, checked): {_show(summary)}")


@click.command("verify-backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify_backup(path: Path, as_json: bool) -> None:
    """Check a backup file whole: every checksum, document and event. Exit 1 if damaged."""
    try:
        summary = check_backup(path, _progress).summary()
    except BackupError as err:
        raise click.ClickException(f"backup refused: {err}") from None
    click.echo(json.dumps(summary, indent=1) if as_json else f"backup is good: {_show(summary)}")


@click.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="The new node's name [the backed-up node's].")
@click.option("--zone", type=click.Choice(cm.ZONES), default=None, help="[the backed-up node's]")
def restore_(path: Path, data_dir: Path, name: str | None, zone: str | None) -> None:
    """Create a new node, first of a new cluster, from a backup (into a new, empty folder)."""
    try:
        checked = check_backup(path, _progress)
        done = restore(checked, DataDir(data_dir), name=name, zone=zone, progress=_progress)
    except (BackupError, StoreError, DataDirError, NodeError) as err:
        raise click.ClickException(f"nothing restored: {err}") from None
    except (OSError, lmdb.Error) as err:  # e.g. the disk filled up: what was made is undone
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise click.ClickException(f"nothing restored: cannot write {data_dir}: {reason}") from None
    former = ", ".join(done["former_members"]) or "none"
    click.echo(
        f"restored into {data_dir} as node {done['code']} ({done['name']}) of a new cluster: "
        f"{_show(done)}\nthe former nodes ({former}) are marked revoked; start with "
        f"`sterimesh run --data {data_dir}` and join other PCs with `sterimesh invite`\n"
        f"this PC's own settings are not in a backup: set up again in {data_dir}/node.toml"
        " its [backup] schedule, printers, cycle taps and folders, and scanners"
    )

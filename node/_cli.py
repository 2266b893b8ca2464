"""The `sterimesh` command line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sys
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import click

import crdt_model as cm

from ._auth import ROLES, AuthError, Principal
from ._backup_cli import backup, restore_, verify_backup
from ._bundle import BundleError, read_bundle
from ._cluster import async_invite, async_join, async_revoke, members
from ._cluster_demo import async_demo
from ._feed_cli import feed
from ._layout import (
    CONTROL_URL,
    DEFAULT_LISTEN,
    DEFAULT_SYNC_LISTEN,
    DataDir,
    DataDirError,
    control_session,
    not_answering,
)
from ._node import VERSION, Node, NodeError, init_node
from ._pki import PkiError
from ._sample import SCALES, write_sample
from ._server import async_run, parse_hostport
from ._settings import SECTIONS, async_set_settings, settings_of
from ._store import StoreError

T = TypeVar("T")

CLI_PRINCIPAL = Principal(name="cli", role="local")

data_option = click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's data directory.",
)


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (StoreError, DataDirError, NodeError, AuthError, PkiError) as err:
        raise _fail(str(err)) from None


async def _offline(
    data: DataDir, action: Callable[[Node], Awaitable[T]], *, readonly: bool = False
) -> T:
    node = Node(data)
    await node.async_open(readonly=readonly)
    try:
        return await action(node)
    finally:
        await node.async_close()


async def _control(
    data: DataDir, method: str, path: str, *, body: Any = None, raw: bytes | None = None
) -> Any:
    """A request to the node serving `data`, over its control socket."""
    async with control_session(data) as session:
        kwargs: dict[str, Any] = {"json": body} if raw is None else {"data": raw}
        try:
            async with session.request(method, CONTROL_URL + path, **kwargs) as resp:
                answer = await resp.json(content_type=None)
        except aiohttp.ClientError as err:
            raise _fail(not_answering(data, err)) from None
    if isinstance(answer, dict) and answer.get("ok") is False:
        raise _fail(str(answer.get("error")))
    return answer


SERVING_COMMANDS = frozenset({"run", "demo"})
"""Commands that serve, and log what they do; the others log only warnings and errors."""


@click.group()
@click.version_option(VERSION, prog_name="sterimesh")
@click.option(
    "--log-level",
    default=None,
    help="DEBUG, INFO, WARNING... [INFO for run and demo, WARNING for the others]",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """sterimesh: sterilization traceability that keeps working through outages."""
    default = "INFO" if ctx.invoked_subcommand in SERVING_COMMANDS else "WARNING"
    logging.basicConfig(
        level=getattr(logging, (log_level or default).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


cli.add_command(feed)
cli.add_command(backup)
cli.add_command(verify_backup)
cli.add_command(restore_)


@cli.command("sample-data")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--scale", type=click.Choice(SCALES), default="small", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--encoding", type=click.Choice(["utf-8", "cp1252"]), default="utf-8", show_default=True
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="First planning day (default today); with --seed it fixes every byte.",
)
def sample_data(out: Path, scale: str, seed: int, encoding: str, start: Any) -> None:
    """Write a coherent sample export bundle (reference data) to --out."""
    try:
        write_sample(
            out, scale=scale, seed=seed, encoding=encoding, start=start.date() if start else None
        )
    except ValueError as err:
        raise _fail(str(err)) from None
    except OSError as err:
        raise _fail(f"{out}: {err.strerror or err}") from None
    click.echo(str(out))


@cli.command()
@data_option
@click.option("--name", required=True, help="A name people recognise, e.g. 'Poste lavage'.")
@click.option("--zone", type=click.Choice(cm.ZONES), default="office", show_default=True)
@click.option("--new-cluster", is_flag=True, help="Start a new cluster with this node.")
def init(data_dir: Path, name: str, zone: str, new_cluster: bool) -> None:
    """Create a node's data directory."""
    if not new_cluster:
        raise click.UsageError("say --new-cluster to start a cluster with this node")
    try:
        identity = init_node(DataDir(data_dir), name=name, zone=zone)
    except (DataDirError, StoreError) as err:
        raise _fail(str(err)) from None
    click.echo(f"node {identity['code']} ({identity['name']}) created in {data_dir}")


@cli.command()
@data_option
@click.option("--listen", default=None, help=f"HOST:PORT of the web UI and API [{DEFAULT_LISTEN}]")
@click.option(
    "--sync-listen",
    default=None,
    help=f"HOST:PORT where peers connect (mutual TLS) [{DEFAULT_SYNC_LISTEN}]",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    help="HOST:PORT of another node's sync listener (repeat; for segments without multicast).",
)
@click.option("--no-mdns", is_flag=True, help="Do not announce or browse on mDNS.")
def run(
    data_dir: Path,
    listen: str | None,
    sync_listen: str | None,
    peers: tuple[str, ...],
    no_mdns: bool,
) -> None:
    """Run the node until Ctrl-C or SIGTERM."""
    data = DataDir(data_dir)
    try:
        config = data.read_config()
    except DataDirError as err:  # the file, not the command line: not a usage error
        raise _fail(str(err)) from None
    for key in ("listen", "sync_listen"):
        if key in config and not (listen if key == "listen" else sync_listen):
            try:
                parse_hostport(str(config[key]), default_port=8700)
            except ValueError as err:
                raise _fail(f"{data.config}: {key}: {err}") from None
    for peer in config.get("peers", []):
        try:
            parse_hostport(str(peer), default_port=8701)
        except ValueError as err:
            raise _fail(f"{data.config}: peers: {err}") from None
    try:
        address = parse_hostport(listen or config.get("listen", DEFAULT_LISTEN), default_port=8700)
        sync_address = parse_hostport(
            sync_listen or config.get("sync_listen", DEFAULT_SYNC_LISTEN), default_port=8701
        )
        static = [*config.get("peers", []), *peers]
        for peer in peers:
            parse_hostport(peer, default_port=8701)
        for option, (host, port) in (("--listen", address), ("--sync-listen", sync_address)):
            _resolvable(option, host, port)
        mdns = bool(config.get("mdns", True)) and not no_mdns
        interfaces = config.get("mdns_interfaces") or None
    except (ValueError, DataDirError) as err:
        raise click.UsageError(str(err)) from None
    try:
        _run(
            async_run(
                data,
                listen=address,
                sync_listen=sync_address,
                peers=static,
                mdns=mdns,
                mdns_interfaces=interfaces,
                ready=f"listening on http://{address[0]}:{address[1]}",
            )
        )
    except OSError as err:
        where = f"{address[0]}:{address[1]} or {sync_address[0]}:{sync_address[1]}"
        raise _fail(f"cannot listen on {where}: {err.strerror}") from None
    except KeyboardInterrupt:
        pass


def _resolvable(option: str, host: str, port: int) -> None:
    """ValueError naming the option when `host` is no address this PC can listen on."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ValueError(f"{option} {host}:{port}: {reason}") from None


def _zip_folder(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(path.iterdir()):
            if item.is_file():
                zf.write(item, item.name)
    return buf.getvalue()


@cli.command("import")
@data_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def import_(data_dir: Path, path: Path) -> None:
    """Import an export bundle (folder or .zip): all of it, or nothing."""
    data = DataDir(data_dir)
    shown: dict[str, int] = {}

    def progress(name: str, done: int, total: int) -> None:
        if total >= 5000 and (done == total or done - shown.get(name, 0) >= 10000):
            shown[name] = done
            click.echo(f"  {name}: {done}/{total} rows", err=True)

    try:
        bundle = read_bundle(path, progress=progress)
    except BundleError as err:
        raise _fail(f"bundle refused, nothing imported: {err}") from None
    if data.is_served():
        raw = path.read_bytes() if path.is_file() else _zip_folder(path)
        summary = _run(_control(data, "POST", "/api/reference", raw=raw))
    else:
        summary = _run(_offline(data, lambda node: node.async_import(bundle)))
    if summary["status"] == "unchanged":
        click.echo(f"export {summary['export_id']} was imported already; nothing changed")
    else:
        rows = sum(summary.get("rows", {}).values())
        click.echo(f"imported export {summary['export_id']}: {rows} rows")
        if summary.get("current") is False:
            click.echo(
                f"not in use: export {summary.get('in_use')} is newer and stays the one in use"
            )
        for retired in summary.get("retired") or []:
            click.echo(f"retired export {retired} (three are kept)")


@cli.command()
@data_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(data_dir: Path, as_json: bool) -> None:
    """Show the node's identity, data and health."""
    data = DataDir(data_dir)
    if data.is_served():
        info = _run(_control(data, "GET", "/api/status"))
        info["running"] = True
    else:
        info = _run(_offline(data, _status, readonly=True))
        info["running"] = False
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        if info.get("failure"):
            raise SystemExit(1)
        return
    ref = info["reference"]
    click.echo(
        f"node {info['node']} {info['name']} (zone {info['zone']})"
        f" {'running' if info['running'] else 'stopped'}"
    )
    click.echo(f"events: {info['events']} over {len(info['days'])} days")
    click.echo(
        "reference: " + (f"{ref['export_id']} exported {ref['exported_at']}" if ref else "none")
    )
    backup = info.get("backup")
    if backup is not None:
        last = backup.get("last_ok_at") or "none yet"
        line = f"backups: {backup['state']}, last good {last}, into {backup['folder']}"
        click.echo(line + (f"; last error: {backup['last_error']}" if backup["last_error"] else ""))
    if info.get("failure"):
        click.echo(f"FAILED: {info['failure']}")
        raise SystemExit(1)  # a script or a monitor sees it without reading the text


async def _status(node: Node) -> dict[str, Any]:
    return node.status()


@cli.group()
def token() -> None:
    """API tokens for integrations and scripts."""


@token.command("create")
@data_option
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
def token_create(data_dir: Path, name: str, role: str) -> None:
    """Create a token and print it alone (it is shown once)."""
    data = DataDir(data_dir)
    if data.is_served():
        answer = _run(_control(data, "POST", "/api/tokens", body={"name": name, "role": role}))
        click.echo(answer["token"])
        return
    click.echo(_run(_offline(data, lambda n: n.async_create_token(name, role, CLI_PRINCIPAL.name))))


@token.command("revoke")
@data_option
@click.option("--name", required=True, help="The name given at creation.")
def token_revoke(data_dir: Path, name: str) -> None:
    """Revoke the tokens of a name: refused at once, on every node."""
    data = DataDir(data_dir)
    if data.is_served():
        count = _run(_control(data, "POST", f"/api/tokens/{quote(name, safe='')}/revoke"))[
            "revoked"
        ]
    else:
        count = _run(_offline(data, lambda n: n.async_revoke_tokens(name, CLI_PRINCIPAL.name)))
    click.echo(f"{count} token(s) named {name} revoked")


@cli.group()
def settings() -> None:
    """Cluster settings: time zone, shelf lives by packaging, label layout (every node)."""


@settings.command("show")
@data_option
def settings_show(data_dir: Path) -> None:
    """Print every settings section as JSON."""
    data = DataDir(data_dir)
    if data.is_served():
        shown = _run(_control(data, "GET", "/api/settings"))
    else:

        async def read(node: Node) -> dict[str, Any]:
            return settings_of(node)

        shown = _run(_offline(data, read, readonly=True))
    click.echo(json.dumps(shown, indent=1, ensure_ascii=False, sort_keys=True))


@settings.command("set")
@data_option
@click.argument("section", type=click.Choice(SECTIONS))
@click.argument("value")
def settings_set(data_dir: Path, section: str, value: str) -> None:
    """Replace one section with the JSON object VALUE, e.g.

    settings set views '{"shelf_life_by_packaging": {"double sachet": 180}}'
    """
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise click.UsageError(f"VALUE is not JSON: {err.msg} at character {err.pos}") from None
    data = DataDir(data_dir)
    if data.is_served():
        kept = _run(_control(data, "PUT", f"/api/settings/{section}", body=parsed))[section]
    else:
        kept = _run(
            _offline(data, lambda n: async_set_settings(n, section, parsed, CLI_PRINCIPAL.name))
        )
    click.echo(f"settings {section}: {json.dumps(kept, ensure_ascii=False, sort_keys=True)}")
    if section == "site":
        click.echo("the time zone is read when a node starts: restart each node", err=True)


@cli.group()
def user() -> None:
    """People who log in to the web UI."""


@user.command("disable")
@data_option
@click.option("--login", required=True)
@click.option("--enable", is_flag=True, help="Let the user log in again instead.")
def user_disable(data_dir: Path, login: str, enable: bool) -> None:
    """Stop a user logging in (their open sessions end at once), or --enable them again."""
    data = DataDir(data_dir)
    action = "enable" if enable else "disable"
    if data.is_served():
        _run(_control(data, "POST", f"/api/users/{quote(login, safe='')}/{action}"))
    else:
        _run(
            _offline(
                data, lambda n: n.async_disable_user(login, CLI_PRINCIPAL.name, disabled=not enable)
            )
        )
    click.echo(f"user {login} {action}d")


@user.command("add")
@data_option
@click.option("--login", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
def user_add(data_dir: Path, login: str, role: str) -> None:
    """Create or replace a user; the password is read from standard input."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise _fail("give the password on standard input")
    data = DataDir(data_dir)
    body = {"login": login, "role": role, "password": password}
    if data.is_served():
        _run(_control(data, "POST", "/api/users", body=body))
    else:
        _run(_offline(data, lambda n: n.async_add_user(login, role, password, CLI_PRINCIPAL.name)))
    click.echo(f"user {login} ({role}) saved")


@cli.command()
@data_option
def invite(data_dir: Path) -> None:
    """Print a one-time join token for a new node (valid one hour)."""
    data = DataDir(data_dir)
    if data.is_served():
        click.echo(_run(_control(data, "POST", "/api/invites"))["token"])
        return
    click.echo(_run(_offline(data, lambda n: async_invite(n, CLI_PRINCIPAL.name))))


@cli.command()
@data_option
@click.option("--name", required=True, help="A name people recognise, e.g. 'Poste stérile'.")
@click.option("--zone", type=click.Choice(cm.ZONES), default="office", show_default=True)
@click.option(
    "--token",
    required=True,
    envvar="STERIMESH_JOIN_TOKEN",
    help="The token printed by `sterimesh invite` (or set STERIMESH_JOIN_TOKEN: other users"
    " of the PC see command lines, not another process's environment).",
)
@click.option("--peer", required=True, help="HOST:PORT of the inviting node's sync listener.")
def join(data_dir: Path, name: str, zone: str, token: str, peer: str) -> None:
    """Join an existing cluster with a one-time token."""
    try:
        host, port = parse_hostport(peer, default_port=8701)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    identity = _run(async_join(DataDir(data_dir), name=name, zone=zone, token=token, peer=target))
    click.echo(f"node {identity['code']} ({identity['name']}) joined the cluster in {data_dir}")


@cli.command()
@data_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def nodes(data_dir: Path, as_json: bool) -> None:
    """List the cluster's members."""
    data = DataDir(data_dir)
    if data.is_served():
        found = _run(_control(data, "GET", "/api/nodes"))["nodes"]
    else:
        found = _run(_offline(data, _members, readonly=True))
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    for m in found:
        mark = " (this node)" if m["self"] else ""
        fp = (m["cert_fingerprint"] or "")[:16]
        click.echo(f"{m['code']:<3} {m['state']:<8} {m['zone']:<8} {m['name']}{mark}  cert {fp}")


async def _members(node: Node) -> list[dict[str, Any]]:
    return members(node)


@cli.command()
@data_option
@click.argument("node_ref", metavar="NODE")
def revoke(data_dir: Path, node_ref: str) -> None:
    """Revoke a node (code or id): a lost or stolen PC leaves the cluster."""
    data = DataDir(data_dir)
    if data.is_served():
        path = f"/api/nodes/{quote(node_ref, safe='')}/revoke"
        answer = _run(_control(data, "POST", path))
    else:
        answer = _run(_offline(data, lambda n: async_revoke(n, node_ref, CLI_PRINCIPAL.name)))
    named = f" ({answer['name']}, zone {answer['zone']})" if answer.get("name") else ""
    click.echo(f"node {answer['code']}{named} revoked: every peer refuses it from now on")


@cli.command()
@click.option(
    "--dir",
    "base",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
)
@click.option("--nodes", type=click.IntRange(1, 6), default=3, show_default=True)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address every node listens on."
)
@click.option(
    "--first-port",
    type=click.IntRange(1024, 65000),
    default=8700,
    show_default=True,
    help="Node A's web port; its sync port is the next one, node B's web port the one after...",
)
@click.option("--scale", type=click.Choice(SCALES), default="hospital", show_default=True)
def demo(base: Path, nodes: int, host: str, first_port: int, scale: str) -> None:
    """A cluster of nodes on loopback with sample data and simulated devices."""
    try:
        _run(async_demo(base, nodes=nodes, host=host, first_port=first_port, scale=scale))
    except OSError as err:
        raise _fail(
            f"cannot listen ({err.strerror}): is another demo running? try --first-port"
        ) from None
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Entry point of the `sterimesh` command."""
    cli()

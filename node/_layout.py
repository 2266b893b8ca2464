"""Where a node keeps its files inside its data directory."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

DEFAULT_LISTEN = "127.0.0.1:8700"
DEFAULT_SYNC_LISTEN = "0.0.0.0:8701"


class DataDirError(Exception):
    """The data directory is missing, locked by a running node, or its config is bad."""


class NodeRunningError(DataDirError):
    """A node process holds this data directory."""


@dataclass(frozen=True)
class DataDir:
    """Paths of one node's data directory."""

    root: Path

    @property
    def store(self) -> Path:
        """The LMDB environment."""
        return self.root / "store"

    @property
    def lock(self) -> Path:
        """Held (flock) by the process that owns the store."""
        return self.root / "node.lock"

    @property
    def socket(self) -> Path:
        """The control socket a running node serves for local commands."""
        return self.root / "node.sock"

    @property
    def pki(self) -> Path:
        """Keys and certificates of the cluster and this node (mode 0700)."""
        return self.root / "pki"

    @property
    def config(self) -> Path:
        """Optional settings of this node (TOML)."""
        return self.root / "node.toml"

    def read_config(self) -> dict[str, Any]:
        """The node.toml settings, or {} when there is none."""
        try:
            with self.config.open("rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise DataDirError(f"{self.config}: {err}") from None

    def write_config(self, listen: str = DEFAULT_LISTEN, peers: list[str] | None = None) -> None:
        """Write the default node.toml (with `peers`: the node this one joined through)."""
        text = (
            f'# sterimesh node settings; command-line options override them\nlisten = "{listen}"\n'
        )
        if peers:
            text += (
                "# sync address of the node this one joined through (mDNS finds the others;"
                " add more where multicast is blocked)\n"
                f"peers = {json.dumps(peers)}\n"
            )
        self.config.write_text(text)

    def acquire(self) -> IO[bytes]:
        """Take the exclusive lock of this data directory; NodeRunningError when held."""
        if not self.root.is_dir():
            raise DataDirError(f"{self.root} does not exist: run `sterimesh init` first")
        try:
            fh = self.lock.open("ab")
        except OSError as err:  # most often: another user than the node's
            raise DataDirError(
                f"cannot open {self.lock}: {err.strerror or err}; run this as the node's user"
                f" (the one that owns {self.root})"
            ) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise NodeRunningError(
                f"a node is running on {self.root}, or another sterimesh command"
                " (a backup, a feed export) is using it"
            ) from None
        os.set_inheritable(fh.fileno(), False)
        return fh

    def is_served(self) -> bool:
        """True when a running node holds this directory."""
        if not self.lock.exists():
            return False  # no node ever ran here (and asking leaves the folder as it was)
        try:
            self.acquire().close()
        except NodeRunningError:
            return True
        except DataDirError:
            return False
        return False


def address_group(address: str) -> str:
    """What the per-address limit counts by: an IPv4 address, an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def not_answering(data: DataDir, err: BaseException) -> str:
    """What to say when `data` is held but its control socket takes no request: a node
    starting or stopping, or a command working offline on the folder (which holds its lock
    and has no socket), or a node that hangs."""
    if isinstance(err, aiohttp.ClientConnectorError) and isinstance(
        err.os_error, FileNotFoundError | ConnectionRefusedError
    ):
        return (
            f"{data.root} is in use by another sterimesh command (a backup, a feed export, a"
            " restore) or by a node starting or stopping: try again once it has ended"
        )
    return f"the node serving {data.root} does not answer: {err}"


CONTROL_URL = "http://node"
"""Base URL of requests over a node's control socket (the host part is not used)."""


def control_session(data: DataDir, **kwargs: Any) -> aiohttp.ClientSession:
    """An HTTP session to the node serving `data`, over its control socket."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(data.socket)), **kwargs)


def fsync_folder(folder: Path) -> None:
    """Make the names just created, renamed or removed in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, check: Callable[[Path], object] | None = None) -> None:
    """Write a file whole or not at all (fsynced under a temporary name, then renamed), mode
    0600. `check`, given the temporary file, may refuse it by raising: `path` stays as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
        tmp.replace(path)
        fsync_folder(path.parent)  # the rename itself survives a power cut
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""Scheduled backups where people look: a card on the admin page, an alert on the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import html
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from node import Node
from node._backup import (
    BackupError,
    ScheduledBackups,
    failure_reason,
    node_info,
    snapshot,
    write_backup,
)
from node._users import async_update_user
from node._web_support import local_time
from tests.helpers import STRICT
from tests.web.helpers import PASSWORD, csrf_of

SHOWN = "%d/%m/%Y %H:%M"

Schedule = Callable[..., ScheduledBackups]


@pytest.fixture
async def schedule(node: Node) -> AsyncIterator[Schedule]:
    """Start scheduled backups of the node into a folder, as `[backup]` in node.toml does."""
    started: list[ScheduledBackups] = []

    def start(folder: Path, every_hours: float = 24) -> ScheduledBackups:
        backups = ScheduledBackups(
            node, {"backup": {"folder": str(folder), "every_hours": every_hours}}
        )
        backups.start()  # the first run comes after a minute, or one period when shorter
        started.append(backups)
        return backups

    yield start
    for backups in started:
        await backups.async_stop()


async def login(client: TestClient, user: str) -> None:
    client.session.cookie_jar.clear()
    page = await client.get("/login")
    resp = await client.post(
        "/login", data={"csrf": csrf_of(await page.text()), "login": user, "password": PASSWORD}
    )
    assert resp.status == 200, user


async def text_of(client: TestClient, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200, path
    return html.unescape(await resp.text())


def card(page: str) -> str:
    match = re.search(r'<section class="card" id="backups">(.*?)</section>', page, re.S)
    assert match is not None, page[:1000]
    return match.group(1)


def alert(page: str) -> str | None:
    """The dashboard's backup alert, up to the line that follows it."""
    match = re.search(
        r'<div class="flash [a-z]+" role="alert" id="backup-alert"(.*?)<p class="muted live">',
        page,
        re.S,
    )
    return None if match is None else match.group(1)


def cell(page: str, name: str) -> str:
    match = re.search(rf'<td[^>]* id="{name}">(.*?)</td>', page, re.S)
    assert match is not None, name
    return match.group(1)


async def test_without_backup_settings_the_admin_page_says_so(
    client: TestClient, node: Node
) -> None:
    assert node.backup_status is None
    await login(client, "adm")
    shown = card(await text_of(client, "/admin"))
    assert "<h2>Sauvegardes</h2>" in shown
    assert 'id="backup-off"' in shown
    assert "ne sont pas configurées sur ce poste" in shown
    assert "[backup]" in shown
    assert alert(await text_of(client, "/dashboard")) is None


async def test_a_failing_schedule_alerts_the_dashboard_and_the_admin_card_says_why(
    client: TestClient, node: Node, schedule: Schedule, tmp_path: Path
) -> None:
    folder = tmp_path / "unplugged"  # the share is not mounted
    backups = schedule(folder, every_hours=0.0004)  # a run every 1.44 s, the first one too
    await login(client, "chef")
    for _ in range(100):
        page = await text_of(client, "/dashboard")
        if alert(page) is not None:
            break
        await asyncio.sleep(0.1)
    said = alert(page)
    assert said is not None, "no alert after 10 s"
    status = backups.status()
    assert status["state"] == "failing"
    assert 'data-state="failing"' in said
    assert "Les sauvegardes de ce poste échouent." in said
    assert "Aucune sauvegarde n'a encore réussi." in said
    assert "does not exist" in status["last_error"]
    assert status["last_error_reason"] == "folder_missing"
    assert "le dossier des sauvegardes est introuvable" in said  # why, in the user's language
    assert status["last_error"] in said  # and the detail for IT
    assert "/admin#backups" not in said  # a head cannot do anything about it there
    body = await text_of(client, "/dashboard/body")  # what the live refresh fetches
    assert alert(body) is not None

    await login(client, "adm")
    assert "/admin#backups" in (alert(await text_of(client, "/dashboard")) or "")
    shown = card(await text_of(client, "/admin"))
    assert 'class="badge backup-failing" id="backup-state" data-state="failing">En échec<' in shown
    assert str(folder) in cell(shown, "backup-folder")
    error = cell(shown, "backup-error")
    assert "le dossier des sauvegardes est introuvable" in error
    assert backups.status()["last_error"] in error
    assert local_time(backups.status()["last_error_at"], node.timezone, SHOWN) in error
    assert "Aucune pour l'instant." in cell(shown, "backup-last-ok")
    assert re.search(r"<td>\d+ \(dont \d+ en échec\)</td>", shown)


async def test_a_good_backup_is_ok_without_alert_then_late_with_one(
    client: TestClient, node: Node, schedule: Schedule, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    backups = schedule(folder)
    await login(client, "adm")
    shown = card(await text_of(client, "/admin"))
    assert 'data-state="pending">Première sauvegarde à venir<' in shown
    assert "Toutes les 24 h ; les 14 fichiers les plus récents sont gardés" in shown
    assert alert(await text_of(client, "/dashboard")) is None

    await backups.run_once()
    status = backups.status()
    assert status["state"] == "ok"
    shown = card(await text_of(client, "/admin"))
    assert 'data-state="ok">À jour<' in shown
    last_ok = cell(shown, "backup-last-ok")
    paris = local_time(status["last_ok_at"], ZoneInfo("Europe/Paris"), SHOWN)
    utc = local_time(status["last_ok_at"], ZoneInfo("UTC"), SHOWN)
    assert paris in last_ok  # the hospital's time zone, not UTC
    assert utc not in last_ok
    assert status["last_file"] in last_ok
    assert [p.name for p in folder.iterdir()] == [status["last_file"]]
    assert 'id="backup-error"' not in shown
    for user in ("chef", "adm"):
        await login(client, user)
        assert alert(await text_of(client, "/dashboard")) is None, user
        assert alert(await text_of(client, "/dashboard/body")) is None, user

    # two periods without a good backup: late
    assert backups.last_ok_at is not None
    backups.last_ok_at -= 3 * backups.every_s
    status = backups.status()
    assert status["state"] == "stale"
    said = alert(await text_of(client, "/dashboard"))
    assert said is not None
    assert '<div class="flash warn" role="alert"' in await text_of(client, "/dashboard")
    assert "Les sauvegardes de ce poste sont en retard." in said
    last = local_time(status["last_ok_at"], node.timezone, SHOWN)
    assert f"Dernière sauvegarde réussie : {last}." in said
    assert 'data-state="stale">En retard<' in card(await text_of(client, "/admin"))


async def test_the_card_and_the_alert_in_dutch(
    client: TestClient, node: Node, schedule: Schedule, tmp_path: Path
) -> None:
    backups = schedule(tmp_path / "missing")
    await backups.run_once()
    await async_update_user(node, "adm", {"lang": "nl"}, "test")
    await login(client, "adm")
    shown = card(await text_of(client, "/admin"))
    assert "<h2>Back-ups</h2>" in shown
    assert 'data-state="failing">Mislukt<' in shown
    assert "Elke 24 u; de 14 nieuwste bestanden worden bewaard" in shown
    said = alert(await text_of(client, "/dashboard"))
    assert said is not None
    assert "De back-ups van deze post mislukken." in said
    assert "Nog geen enkele back-up is gelukt." in said
    assert "Zie de beheerpagina." in said


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[None]:
    """A real small file system mounted on `folder` (root), filled up by another file."""
    folder.mkdir()
    problem = None
    if os.geteuid() != 0:
        problem = "mounting a small file system needs root"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        problem = done.stderr.strip() if done.returncode else None
    if problem:
        if STRICT:
            pytest.fail(problem)
        pytest.skip(problem)
    try:
        with contextlib.suppress(OSError), (folder / "other-files").open("wb") as fh:
            while True:
                fh.write(b"x" * 4096)
                fh.flush()
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def test_a_full_backup_disk_is_said_in_words_the_head_reads(
    client: TestClient, node: Node, schedule: Schedule, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    with full_disk(folder):
        backups = schedule(folder)
        await backups.run_once()
        status = backups.status()
        assert (status["state"], status["last_error_reason"]) == ("failing", "no_space")
        assert [p.name for p in folder.iterdir()] == ["other-files"]  # no partial backup left
        await login(client, "chef")
        said = alert(await text_of(client, "/dashboard"))
        assert said is not None
        assert "le dossier des sauvegardes est plein" in said
        assert status["last_error"] in said  # the system's own words, for IT
        await login(client, "adm")
        assert "le dossier des sauvegardes est plein" in cell(
            card(await text_of(client, "/admin")), "backup-error"
        )


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no_space"),
        (OSError(errno.EROFS, "Read-only file system"), "read_only"),
        (OSError(errno.EACCES, "Permission denied"), "no_permission"),
        (OSError(errno.EIO, "Input/output error"), "failed"),
    ],
)
def test_each_system_error_has_its_reason(err: OSError, reason: str, tmp_path: Path) -> None:
    assert failure_reason(err, tmp_path) == reason
    wrapped = BackupError("cannot write")
    wrapped.__cause__ = err
    assert failure_reason(wrapped, tmp_path) == reason
    assert failure_reason(err, tmp_path / "gone") == "folder_missing"
    assert failure_reason(BackupError("checksum"), tmp_path, checking=True) == "damaged"


async def test_a_clock_set_back_never_prunes_the_backup_just_made(
    node: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    mine = write_backup(node_info(node), snapshot(node))
    for n, year in enumerate((2031, 2032)):  # written while the PC's clock was years ahead
        old = folder / f"sterimesh-{node.code}-{year}0101-000000Z.zip"
        old.write_bytes(mine)
        os.utime(old, (1_700_000_000 + n, 1_700_000_000 + n))
    backups = ScheduledBackups(node, {"backup": {"folder": str(folder), "keep": 2}})
    await backups.run_once()
    assert backups.status()["state"] == "ok"
    kept = sorted(p.name for p in folder.iterdir())
    assert backups.status()["last_file"] in kept
    assert kept == sorted(
        [backups.status()["last_file"], f"sterimesh-{node.code}-20320101-000000Z.zip"]
    )


async def test_pruning_leaves_what_another_node_or_nothing_known_wrote(
    node: Node, tmp_path: Path
) -> None:
    """Two sites, or a cluster made anew after a disaster, may share one folder: each first
    node is A. Only this node's own backups are pruned; a run cut off leaves its temporary
    file, removed a day later."""
    folder = tmp_path / "share"
    folder.mkdir()
    docs = snapshot(node)
    other = write_backup({**node_info(node), "node_id": "another-site-node-a"}, docs)
    theirs = [folder / f"sterimesh-{node.code}-2026010{n}-000000Z.zip" for n in range(1, 4)]
    for n, path in enumerate(theirs):
        path.write_bytes(other)
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))
    unknown = folder / f"sterimesh-{node.code}-20260104-000000Z.zip"
    unknown.write_bytes(b"not a backup")
    os.utime(unknown, (1_700_000_000, 1_700_000_000))
    cut_off = folder / f".sterimesh-{node.code}-20260105-000000Z.zip.tmp"
    recent = folder / f".sterimesh-{node.code}-20260106-000000Z.zip.tmp"
    for path in (cut_off, recent):
        path.write_bytes(b"half")
    os.utime(cut_off, (1_700_000_000, 1_700_000_000))
    backups = ScheduledBackups(node, {"backup": {"folder": str(folder), "keep": 1}})
    await backups.run_once()
    await backups.run_once()
    assert backups.status()["state"] == "ok"
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == sorted(
        [backups.status()["last_file"], unknown.name, recent.name, *(p.name for p in theirs)]
    )

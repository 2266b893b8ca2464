"""Clearing a peer's flag through the REST API (the flag itself: tests/sync/test_manager.py)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.procs import NodeProcess, create_token, init_node_dir

pytestmark = pytest.mark.slow


async def test_clearing_a_flag_is_for_admins_and_needs_a_flagged_peer(tmp_path: Path) -> None:
    data = init_node_dir(tmp_path / "a")
    admin = create_token(data, "admin", "it")
    operator = create_token(data, "operator", "station")
    with NodeProcess(data).start() as node:
        async with aiohttp.ClientSession() as session:
            url = node.base_url + "/api/peers/B/clear-flag"
            async with session.post(url, headers={"Authorization": f"Bearer {operator}"}) as resp:
                assert resp.status == 403
            async with session.post(url, headers={"Authorization": f"Bearer {admin}"}) as resp:
                answer = await resp.json()
                assert resp.status == 400
                assert answer["ok"] is False
                assert answer["error"] == "peer 'B' is not flagged"

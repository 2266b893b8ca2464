"""Fixtures of the in-process web tests: a node with one user per role, and its client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from node import Node, make_app
from tests.node.nodes import StepClock, new_data_dir, open_node
from tests.web.helpers import PASSWORD, ROLES


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node (its clock a second a reading) with the users of ROLES, password PASSWORD."""
    node = await open_node(new_data_dir(tmp_path), clock=StepClock(step=1000))
    for login, role in ROLES.items():
        await node.async_add_user(login, role, PASSWORD, "test")
    yield node
    await node.async_close()


@pytest.fixture
async def client(node: Node, aiohttp_client: Any) -> TestClient:
    """An HTTP client of the node's web app over a real loopback socket."""
    client: TestClient = await aiohttp_client(make_app(node))
    return client

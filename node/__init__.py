"""The sterimesh node: store, services, REST API and command line."""

from ._api import make_app
from ._layout import DataDir, DataDirError, NodeRunningError
from ._node import VERSION, ConflictError, Node, NodeError, NodeFailedError, init_node
from ._server import NodeServer, async_run
from ._store import Store, StoreDamagedError, StoreError

__all__ = [
    "VERSION",
    "ConflictError",
    "DataDir",
    "DataDirError",
    "Node",
    "NodeError",
    "NodeFailedError",
    "NodeRunningError",
    "NodeServer",
    "Store",
    "StoreDamagedError",
    "StoreError",
    "async_run",
    "init_node",
    "make_app",
]

"""An isolated network of N nodes in Linux network namespaces on one bridge.

Build it, start a node in each namespace, cut and heal links in any partition
shape, and remove everything, also after a crash. Used by tests and by IT to
rehearse an outage (docs/LAB.md).
"""

from __future__ import annotations

from deploy.lab.lab import DEFAULT_PREFIX, DEFAULT_SUBNET, Lab, LabError, main

__all__ = ["DEFAULT_PREFIX", "DEFAULT_SUBNET", "Lab", "LabError", "main"]

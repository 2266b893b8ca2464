"""Shared builders for tests that need network namespaces (the lab, real mDNS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.lab import Lab
from tests.helpers import STRICT

REPO_ROOT = Path(__file__).resolve().parents[2]
_netns_ok: str | None = None  # "" once namespaces were seen to work, else why not


def require_netns() -> None:
    """Root, iproute2 and working network namespaces; fail under STERIMESH_STRICT=1, else skip."""
    global _netns_ok  # noqa: PLW0603
    if _netns_ok is None:
        _netns_ok = _netns_problem()
    if _netns_ok:
        message = f"network namespaces unavailable: {_netns_ok}"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)


def lab_prefix(stem: str) -> str:
    """A lab prefix unique to this test process: STEM + pid (labs of dead runs are swept)."""
    sweep_stale_labs(stem)
    return f"{stem}{os.getpid()}"


def sweep_stale_labs(stem: str) -> None:
    """Remove the labs STEM<pid> left by test processes that no longer run."""
    pattern = re.compile(rf"^({re.escape(stem)}(\d+)[a-z]*)-")
    stale = {
        m.group(1)
        for name in _netns_names()
        if (m := pattern.match(name)) and not Path(f"/proc/{m.group(2)}").exists()
    }
    for prefix in sorted(stale):
        Lab(prefix, 1).down()


def lab_namespaces(prefix: str) -> list[str]:
    """The namespaces named PREFIX-* that `ip netns list` shows."""
    return [x for x in _netns_names() if x.startswith(f"{prefix}-")]


def python_env() -> dict[str, str]:
    """The environment for a Python child that imports the project from the work tree."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _netns_names() -> list[str]:
    ip = shutil.which("ip")
    if ip is None:
        return []
    out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_problem() -> str:
    if os.geteuid() != 0:
        return "the tests need root"
    ip = shutil.which("ip")
    if ip is None:
        return "ip is not installed (.ci/run installs iproute2)"
    probe = f"smtprobe{os.getpid()}"
    made = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True, check=False)
    subprocess.run([ip, "netns", "del", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()[:200]}"
    return ""

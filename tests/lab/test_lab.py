"""The network lab: build, reach, partition, heal, remove, and clean up after a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from deploy.lab import Lab, LabError, main
from deploy.lab.lab import _node_index, _node_name
from tests.lab.lab_helpers import (
    REPO_ROOT,
    lab_namespaces,
    lab_prefix,
    python_env,
    require_netns,
)

READY_TIMEOUT_S = 30.0
_SHOW_ADDR = ("ip", "-o", "-4", "addr", "show", "dev", "eth0")


def _host_link_names() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_netns()
    prefix = lab_prefix("smtlab")
    with Lab(prefix, 3) as built:
        yield built
    assert lab_namespaces(prefix) == []


# -- without root -------------------------------------------------------------------


def test_node_names_run_like_spreadsheet_columns() -> None:
    names = [_node_name(i) for i in range(30)]
    assert names[:3] == ["a", "b", "c"]
    assert names[25:28] == ["z", "aa", "ab"]
    assert [_node_index(x) for x in names] == list(range(30))
    assert Lab("t", 3).nodes == ("a", "b", "c")


@pytest.mark.parametrize(
    ("prefix", "n", "subnet", "message"),
    [
        ("Bad-Prefix", 3, "10.231.0.0/24", "lab prefix"),
        ("t", 3, "8.8.8.0/24", "private test range"),
        ("t", 3, "10.231.0.0/29", "too small"),
        ("t", 0, "10.231.0.0/24", "1 to"),
        ("t", 3, "not-a-subnet", "subnet"),
    ],
)
def test_bad_settings_are_refused(prefix: str, n: int, subnet: str, message: str) -> None:
    with pytest.raises(LabError, match=message):
        Lab(prefix, n, subnet)


def test_addresses_and_namespace_names() -> None:
    lab = Lab("t", 3, "10.231.7.0/24")
    assert [lab.addr(x) for x in lab.nodes] == ["10.231.7.11", "10.231.7.12", "10.231.7.13"]
    assert lab.ns("b") == "t-b"
    assert lab.addr("t-c") == "10.231.7.13"
    with pytest.raises(LabError, match="no node"):
        lab.addr("d")


# -- with namespaces ----------------------------------------------------------------


def test_nodes_reach_each_other_by_unicast_and_multicast(lab: Lab) -> None:
    assert sorted(lab_namespaces(lab.prefix)) == sorted([lab.switch_ns, *map(lab.ns, lab.nodes)])
    assert lab.groups() == [["a", "b", "c"]]
    assert not {"p-a", "p-b", "p-c"} & _host_link_names(), "lab links must stay off the host"
    assert all(lab.reachability().values()), lab.reachability()
    assert lab.multicast_reach("a") == {"b", "c"}
    shown = lab.run("b", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
    assert shown.returncode == 0, shown.stderr
    assert "10.231.0.12/24" in shown.stdout
    routes = lab.run("b", ["ip", "route", "show", "default"])
    assert routes.stdout.strip() == "", "a lab node must have no way out"


def test_partition_cuts_between_groups_and_heal_restores(lab: Lab) -> None:
    lab.partition([["a"], ["b", "c"]])
    assert lab.groups() == [["a"], ["b", "c"]]
    reach = lab.reachability()
    assert reach == {
        ("a", "b"): False,
        ("a", "c"): False,
        ("b", "a"): False,
        ("b", "c"): True,
        ("c", "a"): False,
        ("c", "b"): True,
    }
    assert lab.multicast_reach("b") == {"c"}
    assert lab.multicast_reach("a") == set()

    lab.heal()
    assert lab.groups() == [["a", "b", "c"]]
    assert all(lab.reachability().values()), lab.reachability()
    assert lab.multicast_reach("a") == {"b", "c"}


def test_unnamed_nodes_form_one_group_and_bad_shapes_are_refused(lab: Lab) -> None:
    lab.partition([["b"]])
    assert lab.groups() == [["a", "c"], ["b"]]
    lab.partition([["a", "b"], ["c"]])  # a new shape replaces the old one
    assert lab.groups() == [["a", "b"], ["c"]]
    with pytest.raises(LabError, match="two groups"):
        lab.partition([["a"], ["a", "b"]])
    with pytest.raises(LabError, match="no node"):
        lab.partition([["x"]])
    assert lab.groups() == [["a", "b"], ["c"]], "a refused shape changes nothing"


def test_down_ends_processes_and_removes_everything(lab: Lab) -> None:
    sleeper = lab.exec("a", ["sleep", "300"])
    lab.down()
    assert sleeper.poll() is not None
    assert lab_namespaces(lab.prefix) == []
    assert not lab.is_up()
    lab.down()  # idempotent
    with pytest.raises(LabError, match="does not exist"):
        lab.exec("a", ["true"])


def test_a_lab_left_by_a_killed_process_is_removed_by_the_next_down() -> None:
    require_netns()
    prefix = lab_prefix("smtlab") + "k"
    script = (
        "import sys\n"
        "from deploy.lab import Lab\n"
        f"lab = Lab({prefix!r}, 2)\n"
        "lab.up()\n"
        "proc = lab.exec('b', ['sleep', '300'])\n"
        "print(proc.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    builder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=python_env(),
    )
    try:
        assert builder.stdout is not None
        line = builder.stdout.readline()
        assert line.strip().isdigit(), f"the builder did not start its lab: {line!r}"
        sleeper = int(line)
        os.kill(builder.pid, signal.SIGKILL)
        builder.wait(timeout=READY_TIMEOUT_S)
        assert len(lab_namespaces(prefix)) == 3, "the killed run should have left its lab"
        assert os.path.exists(f"/proc/{sleeper}")

        Lab(prefix, 2).down()

        assert lab_namespaces(prefix) == []
        assert not _running(sleeper), "the process left inside the lab should be ended"
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait()
        for stream in (builder.stdin, builder.stdout):
            if stream is not None:
                stream.close()
        Lab(prefix, 1).down()


def test_cli_builds_partitions_heals_and_removes(capsys: pytest.CaptureFixture[str]) -> None:
    require_netns()
    prefix = lab_prefix("smtlab") + "c"
    try:
        assert main(["--prefix", prefix, "up", "3"]) == 0
        assert "10.231.0.13" in capsys.readouterr().out

        assert main(["--prefix", prefix, "partition", "a,b", "c"]) == 0
        assert "a,b | c" in capsys.readouterr().out

        assert main(["--prefix", prefix, "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["groups"] == [["a", "b"], ["c"]]
        assert [x["address"] for x in status["nodes"]] == [
            "10.231.0.11",
            "10.231.0.12",
            "10.231.0.13",
        ]

        assert main(["--prefix", prefix, "heal"]) == 0
        assert "a,b,c" in capsys.readouterr().out

        inside = subprocess.run(
            [
                sys.executable,
                "deploy/lab/lab.py",
                "--prefix",
                prefix,
                "exec",
                "c",
                "--",
                *_SHOW_ADDR,
            ],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=READY_TIMEOUT_S,
            check=False,
        )
        assert inside.returncode == 0, inside.stderr
        assert "10.231.0.13/24" in inside.stdout

        assert main(["--prefix", prefix, "partition", "a,x"]) == 1
        assert "no node 'x'" in capsys.readouterr().err

        assert main(["--prefix", prefix, "down"]) == 0
        assert lab_namespaces(prefix) == []
        assert main(["--prefix", prefix, "status"]) == 1
        assert "no lab" in capsys.readouterr().err
        with pytest.raises(SystemExit) as usage:
            main(["--prefix", prefix, "explode"])
        assert usage.value.code == 2
    finally:
        Lab(prefix, 1).down()


def test_docs_show_every_command() -> None:
    doc = (REPO_ROOT / "docs" / "LAB.md").read_text()
    for command in ("up 3", "down", "partition a,b c", "heal", "status", "exec a --"):
        assert f"python3 -m deploy.lab {command}" in doc, command
    assert "iproute2" in doc


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return False

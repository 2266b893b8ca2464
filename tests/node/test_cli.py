from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from node import DataDir
from node._cli import cli
from node._sample import write_sample

STERIMESH = str(Path(sys.executable).parent / "sterimesh")


def invoke(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _invite(node_dir: Path) -> str:
    """`sterimesh invite` on a node: its one-time join token."""
    code, out, err = invoke("invite", "--data", str(node_dir))
    assert code == 0, err
    return out.strip()


def _join(folder: Path, name: str, token: str, peer: str) -> tuple[int, str]:
    """`sterimesh join` of a new PC into `folder`: (exit code, stderr)."""
    code, _, err = invoke(
        "join", "--data", str(folder), "--name", name, "--token", token, "--peer", peer
    )
    return code, err


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    data = tmp_path / "node"
    code, out, err = invoke(
        "init", "--data", str(data), "--name", "Poste lavage", "--zone", "sale", "--new-cluster"
    )
    assert code == 0, err
    assert "node A (Poste lavage)" in out
    return data


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0
    assert "sterimesh" in out


def test_init_needs_new_cluster(tmp_path: Path) -> None:
    code, _, err = invoke("init", "--data", str(tmp_path / "n"), "--name", "x")
    assert code == 2
    assert "--new-cluster" in err


def test_init_twice_is_refused(node_dir: Path) -> None:
    code, _, err = invoke("init", "--data", str(node_dir), "--name", "x", "--new-cluster")
    assert code == 1
    assert "holds a node already" in err


def test_sample_data_then_import_then_status(node_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    code, out, err = invoke(
        "sample-data", "--out", str(bundle), "--seed", "4", "--start", "2026-11-30"
    )
    assert code == 0, err
    code, out, err = invoke("import", "--data", str(node_dir), str(bundle))
    assert code == 0, err
    assert "imported export SAMPLE-SMALL-20261130-s4" in out
    code, out, err = invoke("import", "--data", str(node_dir), str(bundle))
    assert code == 0
    assert "nothing changed" in out
    code, out, err = invoke("status", "--data", str(node_dir), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["running"] is False
    assert info["node"] == "A"
    assert info["reference"]["export_id"] == "SAMPLE-SMALL-20261130-s4"
    code, out, _ = invoke("status", "--data", str(node_dir))
    assert code == 0
    assert "node A Poste lavage (zone sale) stopped" in out


def test_refused_bundle_leaves_the_node_exactly_as_before(node_dir: Path, tmp_path: Path) -> None:
    bundle = write_sample(tmp_path / "bundle", scale="small", seed=2)
    store = DataDir(node_dir).store / "data.mdb"
    before = store.read_bytes()
    path = bundle / "set_types.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\nXX;broken\n", 1))
    code, out, err = invoke("import", "--data", str(node_dir), str(bundle))
    assert code == 1
    assert "bundle refused, nothing imported: set_types.csv" in err
    assert out == ""
    assert store.read_bytes() == before


def test_token_create_prints_the_token_alone(node_dir: Path) -> None:
    code, out, err = invoke(
        "token", "create", "--data", str(node_dir), "--name", "lims", "--role", "integration"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("smt_")
    assert len(lines[0]) > 40


def test_token_with_unknown_role_is_a_usage_error(node_dir: Path) -> None:
    code, _, err = invoke(
        "token", "create", "--data", str(node_dir), "--name", "x", "--role", "king"
    )
    assert code == 2
    assert "king" in err


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("--listen", "nonsense", "--listen nonsense:8700"),
        ("--sync-listen", "no-such-host.invalid:8701", "--sync-listen no-such-host.invalid:8701"),
        ("--listen", "127.0.0.1:99999", "not HOST:PORT"),
    ],
)
def test_an_address_the_node_cannot_listen_on_is_a_usage_error(
    node_dir: Path, option: str, value: str, shown: str
) -> None:
    store = {p.name: p.read_bytes() for p in (node_dir / "store").iterdir()}
    code, _, err = invoke("run", "--data", str(node_dir), option, value, "--no-mdns")
    assert code == 2
    assert shown in err
    assert {p.name: p.read_bytes() for p in (node_dir / "store").iterdir()} == store  # not opened


def test_a_command_that_succeeds_says_nothing_on_stderr(node_dir: Path) -> None:
    """Only run and demo log what they do; scripts read stdout, people read the one line."""
    from tests.procs import run_cli

    done = run_cli("token", "create", "--data", str(node_dir), "--name", "x", "--role", "head")
    assert done.stdout.startswith("smt_")
    assert done.stderr == ""
    assert run_cli("status", "--data", str(node_dir)).stderr == ""
    verbose = run_cli("--log-level", "INFO", "status", "--data", str(node_dir))
    assert " INFO " in verbose.stderr


def test_token_revoke_and_user_disable_on_a_stopped_node(node_dir: Path) -> None:
    code, out, err = invoke(
        "token", "create", "--data", str(node_dir), "--name", "xline", "--role", "integration"
    )
    assert code == 0, err
    code, out, err = invoke("token", "revoke", "--data", str(node_dir), "--name", "xline")
    assert (code, out.strip()) == (0, "1 token(s) named xline revoked"), err
    code, _, err = invoke("token", "revoke", "--data", str(node_dir), "--name", "xline")
    assert code == 1
    assert "no API token named 'xline' in use" in err
    code, _, err = invoke("user", "disable", "--data", str(node_dir), "--login", "nobody")
    assert code == 1
    assert "no user 'nobody'" in err


def test_user_add_reads_the_password_from_stdin(node_dir: Path) -> None:
    code, out, err = invoke(
        "user",
        "add",
        "--data",
        str(node_dir),
        "--login",
        "mdupont",
        "--role",
        "releaser",
        input="s3cret-pass\n",
    )
    assert code == 0, err
    assert "user mdupont (releaser) saved" in out
    assert "s3cret-pass" not in out + err
    code, _, err = invoke(
        "user",
        "add",
        "--data",
        str(node_dir),
        "--login",
        "x",
        "--role",
        "operator",
        input="short\n",
    )
    assert code == 1
    assert "at least 8" in err


def test_commands_on_a_missing_directory_fail_clearly(tmp_path: Path) -> None:
    code, _, err = invoke("status", "--data", str(tmp_path / "nowhere"))
    assert code == 1
    assert "sterimesh init" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running_node(node_dir: Path) -> Iterator[tuple[Path, str, str]]:
    port = _free_port()
    sync_port = _free_port()
    proc = subprocess.Popen(
        [
            STERIMESH,
            "run",
            "--data",
            str(node_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--sync-listen",
            f"127.0.0.1:{sync_port}",
            "--no-mdns",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "listening on" in line, proc.stderr.read().decode() if proc.stderr else ""
        yield node_dir, f"http://127.0.0.1:{port}", f"127.0.0.1:{sync_port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_write_commands_go_through_the_running_node(
    running_node: tuple[Path, str, str], tmp_path: Path
) -> None:
    node_dir, url, _ = running_node
    code, out, err = invoke(
        "token", "create", "--data", str(node_dir), "--name", "ops", "--role", "operator"
    )
    assert code == 0, err
    token = out.strip()
    # the running node knows the token at once: it was made by that node, not beside it
    req = urllib.request.Request(
        url + "/api/events",
        data=json.dumps({"type": "note", "text": "via token"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    bundle = write_sample(tmp_path / "bundle", scale="small", seed=5)
    code, out, err = invoke("import", "--data", str(node_dir), str(bundle))
    assert code == 0, err
    assert "imported export" in out
    code, out, err = invoke(
        "user",
        "add",
        "--data",
        str(node_dir),
        "--login",
        "chef",
        "--role",
        "head",
        input="longenough\n",
    )
    assert code == 0, err
    code, out, err = invoke("status", "--data", str(node_dir), "--json")
    info = json.loads(out)
    assert info["running"] is True
    assert info["events"] == 1
    assert info["reference"]["export_id"].startswith("SAMPLE-SMALL-")
    assert DataDir(node_dir).is_served()
    code, _, err = invoke("user", "disable", "--data", str(node_dir), "--login", "chef")
    assert code == 0, err
    code, out, err = invoke("token", "revoke", "--data", str(node_dir), "--name", "ops")
    assert (code, out.strip()) == (0, "1 token(s) named ops revoked"), err
    with pytest.raises(urllib.error.HTTPError) as refused:  # at once, by the running node
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401


def test_new_cluster_has_its_own_ca_and_node_certificate(node_dir: Path) -> None:
    from node._pki import NodePki, issued_by, load_cert, node_id_of

    pki = NodePki(DataDir(node_dir).pki)
    for path in (pki.ca_key, pki.ca_cert, pki.key, pki.cert):
        assert path.stat().st_mode & 0o777 == 0o600, path
    ca = load_cert(pki.ca_cert.read_bytes())
    cert = load_cert(pki.cert.read_bytes())
    assert issued_by(cert, ca)
    _, out, _ = invoke("status", "--data", str(node_dir), "--json")
    assert node_id_of(cert) == json.loads(out)["node_id"]


@pytest.mark.slow
def test_invite_join_list_and_revoke(running_node: tuple[Path, str, str], tmp_path: Path) -> None:
    node_dir, _, sync = running_node
    token = _invite(node_dir)
    assert token.startswith("smj_")
    joined = tmp_path / "b"
    code, out, err = invoke(  # the token from the environment: not on the command line
        "join",
        "--data",
        str(joined),
        "--name",
        "Poste stérile",
        "--zone",
        "sterile",
        "--peer",
        sync,
        env={"STERIMESH_JOIN_TOKEN": token},
    )
    assert code == 0, err
    assert "node B (Poste stérile) joined" in out
    # it keeps the address it joined through: `run` finds the cluster without --peer
    assert tomllib.loads((joined / "node.toml").read_text())["peers"] == [sync]
    # the token was used once: a second node gets nothing
    code, err = _join(tmp_path / "c", "Intrus", token, sync)
    assert code == 1
    assert "used already" in err
    assert not (tmp_path / "c").exists()  # nothing half-made: a new token works in the same folder
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("IT")
    code, err = _join(tmp_path / "d", "Intrus", token, sync)
    assert code == 1
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["notes.txt"]  # what was there stays
    code, out, err = invoke("nodes", "--data", str(node_dir), "--json")
    assert code == 0, err
    found = {m["code"]: m for m in json.loads(out)}
    assert set(found) == {"A", "B"}
    assert found["B"]["state"] == "member"
    assert found["A"]["self"] is True
    code, out, err = invoke("nodes", "--data", str(joined))
    assert code == 0, err
    assert "B   member   sterile  Poste stérile (this node)" in out
    code, _, err = invoke("revoke", "--data", str(node_dir), "A/../B")  # a path, not a code
    assert code == 1
    assert "no member" in err
    code, out, err = invoke("revoke", "--data", str(node_dir), "B")
    assert code == 0, err
    assert "node B (Poste stérile, zone sterile) revoked" in out  # who it was, to be sure
    code, out, _ = invoke("nodes", "--data", str(node_dir), "--json")
    assert {m["code"]: m["state"] for m in json.loads(out)} == {"A": "member", "B": "revoked"}


@pytest.mark.slow
def test_join_refuses_a_peer_of_another_ca(
    running_node: tuple[Path, str, str], tmp_path: Path
) -> None:
    from dataclasses import replace

    from node._pki import Invite

    node_dir, _, sync = running_node
    token = _invite(node_dir)
    forged = replace(Invite.decode(token), ca_fingerprint="00" * 32).encode()
    code, err = _join(tmp_path / "b", "X", forged, sync)
    assert code == 1
    assert "not the one of the token" in err
    # the secret was never sent: the genuine token still works
    code, err = _join(tmp_path / "c", "Y", token, sync)
    assert code == 0, err


@pytest.mark.slow
def test_a_folder_that_holds_an_old_nodes_keys_is_refused_before_the_token_is_used(
    running_node: tuple[Path, str, str], tmp_path: Path
) -> None:
    """The store of a damaged PC deleted, its pki/ left: refused before the inviter admits
    anyone (the token used up, a member made that exists nowhere); the token still works."""
    node_dir, _, sync = running_node
    token = _invite(node_dir)
    old = tmp_path / "c"
    (old / "pki").mkdir(parents=True)
    (old / "pki" / "node.key").write_text("old key")
    code, err = _join(old, "C", token, sync)
    assert code == 1
    assert "holds pki already" in err
    assert (old / "pki" / "node.key").read_text() == "old key"  # left as it was
    code, out, _ = invoke("nodes", "--data", str(node_dir), "--json")
    assert {m["code"] for m in json.loads(out)} == {"A"}  # no member made for it
    code, err = _join(tmp_path / "d", "D", token, sync)
    assert code == 0, err


@pytest.mark.slow
def test_a_join_that_fails_here_after_admission_says_what_to_revoke(
    running_node: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node._pki import NodePki

    node_dir, _, sync = running_node
    token = _invite(node_dir)

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(NodePki, "write", disk_full)
    code, err = _join(tmp_path / "e", "E", token, sync)
    assert code == 1
    assert "Node B was admitted" in err
    assert "sterimesh revoke B" in err
    assert not (tmp_path / "e").exists()  # nothing half-made here


@pytest.mark.slow
def test_a_joining_pc_whose_clock_is_hours_ahead_still_joins(
    running_node: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its clock finds the token expired; the inviter, whose clock made it, decides."""
    import node._cluster as cluster_module

    node_dir, _, sync = running_node
    token = _invite(node_dir)
    ahead = time.time() + 3 * 3600
    monkeypatch.setattr(cluster_module.time, "time", lambda: ahead)
    code, err = _join(tmp_path / "f", "F", token, sync)
    assert code == 0, err


@pytest.mark.slow
def test_a_join_to_the_wrong_address_says_so_plainly(
    running_node: tuple[Path, str, str], tmp_path: Path
) -> None:
    node_dir, web, _ = running_node
    token = _invite(node_dir)
    web_address = web.removeprefix("http://")
    for peer, said in (
        (web_address, "not its web address"),
        (f"127.0.0.1:{_free_port()}", "is the node running"),
    ):
        code, err = _join(tmp_path / "g", "G", token, peer)
        assert code == 1
        assert said in err
        assert "object at 0x" not in err
        assert not (tmp_path / "g").exists()


def test_damaged_or_expired_token_is_refused(tmp_path: Path) -> None:
    from node._pki import new_invite

    code, _, err = invoke(
        "join",
        "--data",
        str(tmp_path / "b"),
        "--name",
        "X",
        "--token",
        "smj_garbage!",
        "--peer",
        "127.0.0.1:9",
    )
    assert code == 1
    assert "damaged" in err
    expired = new_invite("c", "n", "f" * 64, now=1000, inviter_fingerprint="e" * 64).encode()
    code, _, err = invoke(
        "join",
        "--data",
        str(tmp_path / "b"),
        "--name",
        "X",
        "--token",
        expired,
        "--peer",
        "127.0.0.1:9",
    )
    assert code == 1
    assert "expired" in err


def test_settings_are_shown_and_set_with_one_clear_error_for_bad_values(node_dir: Path) -> None:
    code, out, err = invoke("settings", "show", "--data", str(node_dir))
    assert code == 0, err
    shown = json.loads(out)
    assert shown["site"]["timezone"] == "Europe/Paris"
    assert shown["views"] == {}
    views = '{"shelf_life_by_packaging": {"conteneur": 180}}'
    code, out, err = invoke("settings", "set", "--data", str(node_dir), "views", views)
    assert code == 0, err
    code, _, err = invoke("settings", "set", "--data", str(node_dir), "views", "{nope")
    assert code == 2
    assert "not JSON" in err
    code, _, err = invoke("settings", "set", "--data", str(node_dir), "label", '{"dpi": 203.5}')
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    code, out, err = invoke("settings", "show", "--data", str(node_dir))
    assert json.loads(out)["views"] == {"shelf_life_by_packaging": {"conteneur": 180}}
    assert json.loads(out)["label"] == {}


def test_a_data_folder_this_user_cannot_lock_gives_one_clear_line(node_dir: Path) -> None:
    """Run as another user than the node's, the lock cannot be opened (shown with the lock
    made unopenable: the tests run as root, whom permissions do not stop)."""
    (node_dir / "node.lock").unlink(missing_ok=True)
    (node_dir / "node.lock").mkdir()
    for command in ("status", "nodes"):
        code, _, err = invoke(command, "--data", str(node_dir))
        assert code == 1
        assert err.startswith("Error: cannot open ")
        assert "run this as the node's user" in err
        assert len(err.strip().splitlines()) == 1


def test_a_broken_node_toml_is_an_error_not_a_usage_error(node_dir: Path) -> None:
    config = node_dir / "node.toml"
    for text, said in (
        ("listen = [", "node.toml"),
        ('peers = ["nonsense:99999"]', "peers"),
        ('listen = "x:0"', "listen"),
    ):
        config.write_text(text)
        code, _, err = invoke("run", "--data", str(node_dir), "--no-mdns")
        assert code == 1, err
        assert said in err
        assert "Usage:" not in err


def test_status_of_a_failed_node_exits_non_zero(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A monitor or a script sees a node that stopped writing by the exit code alone."""
    from node import Node

    real = Node.status

    def failed(self: Node) -> dict[str, object]:
        return {**real(self), "failure": "storage failed, restart the node"}

    monkeypatch.setattr(Node, "status", failed)
    for args in ((), ("--json",)):
        code, out, _ = invoke("status", "--data", str(node_dir), *args)
        assert code == 1
        assert "storage failed" in out
    monkeypatch.undo()
    code, _, _ = invoke("status", "--data", str(node_dir))
    assert code == 0


def test_a_folder_busy_with_another_command_is_said_so(node_dir: Path) -> None:
    """While an offline command (a backup, a feed export) holds the folder, another command
    says the folder is busy and to try again, not that a node hangs or runs."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from node import DataDir;"
            " lock = DataDir(Path(sys.argv[1])).acquire(); print('held', flush=True);"
            " time.sleep(60)",
            str(node_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        code, out, err = invoke("status", "--data", str(node_dir))
        assert code == 1
        assert "in use by another sterimesh command" in out + err
        assert "try again" in out + err
        code, out, err = invoke("feed", "--data", str(node_dir))
        assert code == 1
        assert "in use by another sterimesh command" in out + err
    finally:
        holder.kill()
        holder.wait()
    code, out, err = invoke("status", "--data", str(node_dir))
    assert code == 0, out + err

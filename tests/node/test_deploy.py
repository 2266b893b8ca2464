"""deploy/: the example configuration starts a node with every section it shows; the unit and
the install script agree on where things go."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from devices.simulators import VirtualSerial, ZplPrinterSimulator
from node._server import NodeServer
from tests.node.nodes import new_data_dir
from tests.procs import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


async def test_the_example_configuration_starts_a_node_with_every_section(
    tmp_path: Path,
) -> None:
    """What the example shows is what a node takes: printers, cycle tap and folder, scanner,
    backups (with this machine's ports and folders in place of the example's)."""
    text = (DEPLOY / "node.toml.example").read_text()
    printer = ZplPrinterSimulator().start()
    (tmp_path / "lavage").mkdir()
    try:
        with VirtualSerial(tmp_path / "tap") as tap, VirtualSerial(tmp_path / "scan") as scan:
            text = (
                text.replace("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", str(tap.path))
                .replace("/dev/ttyACM0", str(scan.path))
                .replace("/srv/lavage", str(tmp_path / "lavage"))
                .replace("/mnt/backup/sterimesh", str(tmp_path / "backups"))
                .replace("10.20.0.50:9100", printer.address)
            )
            data = new_data_dir(tmp_path)
            data.config.write_text(text)
            server = NodeServer(data, listen=("127.0.0.1", 0))
            await server.async_start()
            try:
                assert server.printing is not None
                assert sorted(server.printing.formats.items()) == [
                    ("bureau", "pdf"),
                    ("zebra-sterile", "zpl"),
                ]
                assert server.capture is not None
                assert len(server.capture._taps) == 1
                assert len(server.capture._folders) == 1
                assert server.scanners is not None
                assert server.scanners.stations == ["sale-1"]
                assert server.idle_s == 15 * 60
                assert server.backups is not None
                assert server.backups.folder == tmp_path / "backups"
                assert server.backups.keep == 28
            finally:
                await server.async_stop()
    finally:
        printer.stop()


def test_the_unit_runs_what_the_install_script_puts_where_it_puts_it() -> None:
    unit = (DEPLOY / "sterimesh.service").read_text()
    script = (DEPLOY / "install.sh").read_text()
    start = re.search(r"^ExecStart=(\S+) run --data (\S+)$", unit, re.M)
    assert start is not None
    prefix = re.search(r"^PREFIX=\$\{PREFIX:-(\S+)\}$", script, re.M)
    data = re.search(r"^DATA=\$\{DATA:-(\S+)\}$", script, re.M)
    assert prefix is not None
    assert data is not None
    assert start[1] == f"{prefix[1]}/bin/sterimesh"  # the venv the script makes
    assert start[2] == data[1]
    assert f"ReadWritePaths={data[1]}" in unit  # the only place the node writes
    assert "KillMode=control-group" in unit  # its compaction worker stops with it
    subprocess.run(["sh", "-n", str(DEPLOY / "install.sh")], check=True)  # it parses

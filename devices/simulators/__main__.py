"""Run a simulated device: python -m devices.simulators {sterilizer,washer,scanner,printer}."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import datetime

from ._machines import BOWIE_DICK, ScannerSimulator, SterilizerSimulator, WasherSimulator
from ._printer import PrinterMode, ZplPrinterSimulator
from ._pty import VirtualSerial


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one simulator until Ctrl-C (or its cycle count)."""
    parser = argparse.ArgumentParser(prog="python -m devices.simulators")
    sub = parser.add_subparsers(dest="device", required=True)
    steri = sub.add_parser("sterilizer", help="DAC-style records on a pty")
    steri.add_argument("--pty", action="store_true", required=True, help="serve on a new pty")
    steri.add_argument("--link", help="stable symlink to the pty")
    steri.add_argument("--interval", type=float, default=30.0, help="seconds between cycles")
    steri.add_argument("--cycles", type=int, default=0, help="0: no end; the pty stays open")
    steri.add_argument("--first", type=int, default=1, help="first cycle number")
    steri.add_argument("--bowie-dick", action="store_true", help="start with a Bowie-Dick test")
    washer = sub.add_parser("washer", help="IMS-style CSV files in a drop folder")
    washer.add_argument("--folder", required=True)
    washer.add_argument("--machine", default="LD-02")
    washer.add_argument("--interval", type=float, default=30.0)
    washer.add_argument("--cycles", type=int, default=0)
    washer.add_argument("--first", type=int, default=1)
    scanner = sub.add_parser("scanner", help="each stdin line is sent as a scan on a pty")
    scanner.add_argument("--pty", action="store_true", required=True)
    scanner.add_argument("--link")
    printer = sub.add_parser("printer", help="ZPL printer on raw TCP")
    printer.add_argument("--host", default="127.0.0.1")
    printer.add_argument("--port", type=int, default=9100)
    printer.add_argument("--out", help="folder to store received labels")
    printer.add_argument("--mode", choices=[m.value for m in PrinterMode], default="ready")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.device == "sterilizer":
            _sterilizer(args)
        elif args.device == "washer":
            _washer(args)
        elif args.device == "scanner":
            _scanner(args)
        else:
            _printer(args)
    return 0


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the simulator CLI reports its address


def _sterilizer(args: argparse.Namespace) -> None:
    with VirtualSerial(args.link) as port:
        _say(port.path)
        device = SterilizerSimulator(port)
        number = args.first
        if args.bowie_dick:
            device.run_cycle(number, datetime.now(), program=BOWIE_DICK)
            number += 1
        while args.cycles == 0 or number < args.first + args.cycles:
            time.sleep(args.interval)
            device.run_cycle(number, datetime.now())
            number += 1
        while True:  # keep the pty, and what it holds, until Ctrl-C
            time.sleep(3600)


def _washer(args: argparse.Namespace) -> None:
    device = WasherSimulator(args.folder, machine=args.machine)
    _say(str(device.folder))
    number = args.first
    while args.cycles == 0 or number < args.first + args.cycles:
        device.drop_cycle(number, datetime.now())
        number += 1
        time.sleep(args.interval)


def _scanner(args: argparse.Namespace) -> None:
    with VirtualSerial(args.link) as port:
        _say(port.path)
        device = ScannerSimulator(port)
        for line in sys.stdin:
            if line.strip():
                device.scan(line.strip())


def _printer(args: argparse.Namespace) -> None:
    with ZplPrinterSimulator(args.host, args.port, out_dir=args.out) as device:
        device.set_mode(PrinterMode(args.mode))
        _say(device.address)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())

"""A discovery process for tests, run inside a lab namespace; prints JSON lines.

    python -m tests.discovery.mdns_agent run --node-id ID --code A --ca HEX --port 8701 --interface eth0
    python -m tests.discovery.mdns_agent forge --interface eth0 --records JSON

`run` prints {"event": "started", "name": ...}, then "peer", "gone" and
"ignored" events as MdnsDiscovery reports them; `forge` registers raw
ServiceInfo records (any TXT bytes) and prints "registered". Both stop
gracefully on SIGTERM (unregister with goodbye, print "stopped") and stop by
themselves after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from typing import Any

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from discovery import SERVICE_TYPE, MdnsDiscovery
from discovery._mdns import IGNORED_ATTR
from discovery._net import resolve_interfaces


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class _IgnoredHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        ignored = getattr(record, IGNORED_ATTR, None)
        if ignored is not None:
            emit("ignored", name=ignored[0], reason=ignored[1])


def _stop_on_sigterm() -> asyncio.Event:
    # Installed first thing: a SIGTERM that arrives during the start still stops gracefully.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


async def _until_stopped(stop: asyncio.Event, lifetime: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        emit("lifetime-over")


async def run(args: argparse.Namespace) -> None:
    stop = _stop_on_sigterm()
    logger = logging.getLogger("discovery")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_IgnoredHandler())
    discovery = MdnsDiscovery(
        node_id=args.node_id,
        node_code=args.code,
        ca_fingerprint=args.ca,
        sync_port=args.port,
        interfaces=args.interface,
        proto_version=args.proto,
        on_peer=lambda p: emit("peer", **dataclasses.asdict(p)),
        on_gone=lambda node: emit("gone", node=node),
    )
    await discovery.async_start()
    emit("started", name=discovery.service_name)
    try:
        await _until_stopped(stop, args.lifetime)
    finally:
        await discovery.async_stop()
        emit("stopped")


async def forge(args: argparse.Namespace) -> None:
    stop = _stop_on_sigterm()
    bound = resolve_interfaces(args.interface)
    aiozc = AsyncZeroconf(interfaces=[str(x.ip) for x in bound], ip_version=IPVersion.V4Only)
    infos = [
        AsyncServiceInfo(
            SERVICE_TYPE,
            f"{record['name']}.{SERVICE_TYPE}",
            port=record.get("port", 8701),
            properties=bytes.fromhex(record["raw"]) if "raw" in record else record["txt"],
            server="forger.local.",
            parsed_addresses=[str(x.ip) for x in bound],
        )
        for record in json.loads(args.records)
    ]
    try:
        # Probing takes ~1.5 s a record: register them all at once.
        announced = await asyncio.gather(
            *(aiozc.async_register_service(x, cooperating_responders=True) for x in infos)
        )
        await asyncio.gather(*announced)
        for info in infos:
            emit("registered", name=info.name)
        emit("started")
        await _until_stopped(stop, args.lifetime)
    finally:
        goodbyes = await asyncio.gather(*(aiozc.async_unregister_service(x) for x in infos))
        await asyncio.gather(*goodbyes)
        await aiozc.async_close()
        emit("stopped")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--node-id", required=True)
    p_run.add_argument("--code", required=True)
    p_run.add_argument("--ca", required=True)
    p_run.add_argument("--port", type=int, default=8701)
    p_run.add_argument("--proto", type=int, default=1)
    p_run.add_argument("--interface", action="append")
    p_run.add_argument("--lifetime", type=float, default=60.0)
    p_forge = sub.add_parser("forge")
    p_forge.add_argument("--interface", action="append")
    p_forge.add_argument("--records", required=True)
    p_forge.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(run(args) if args.mode == "run" else forge(args))
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()

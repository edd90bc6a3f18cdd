"""A TCP forwarder for the many-hosts run: the one path from the hosts' network namespaces to
a PostgreSQL that listens on 127.0.0.1 only (which the run must not reconfigure).

``python -m tests.chaos.forwarder TARGET LISTEN [LISTEN ...]`` (each ``HOST:PORT``) listens on
every LISTEN address (the host side of each namespace's veth pair) and relays each connection
to TARGET, byte for byte, until either side closes. It prints ``ready`` once it listens and
runs until SIGTERM or SIGKILL. It keeps no state a connection's loss could not lose.
"""

from __future__ import annotations

import asyncio
import signal
import sys

CHUNK = 1 << 16


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # a reset on either side: the other one is closed below
    finally:
        writer.close()


async def _relay(
    target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))


async def serve(target: tuple[str, int], listen: list[tuple[str, int]]) -> None:
    servers = [
        await asyncio.start_server(lambda r, w: _relay(target, r, w), host, port)
        for host, port in listen
    ]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()  # the open relays end with the process


def main() -> None:
    target, *listen = sys.argv[1:]
    if not listen:
        sys.exit("usage: python -m tests.chaos.forwarder TARGET LISTEN [LISTEN ...]")
    asyncio.run(serve(_address(target), [_address(a) for a in listen]))


if __name__ == "__main__":
    main()

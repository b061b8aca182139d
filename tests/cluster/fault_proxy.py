"""A fault-injecting TCP proxy (asyncio): each byte is held `delay` seconds (plus up to `jitter`) in each
direction, in order, and every few seconds one connection, picked at random, is reset (RST on both sides).
It stands in for `tc qdisc … netem`, which this machine's kernel lacks.

    python fault_proxy.py --delay 0.2 --jitter 0.05 --reset-every 3 LISTEN_HOST:PORT=TARGET_HOST:PORT …

With `--resets-on-signal` the resets begin at SIGUSR1 (a test starts its worker first: a Celery worker's
start-up takes several round trips on one connection). Prints a line per reset (`reset N`), so a test can
count them."""

import argparse
import asyncio
import random
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field


@dataclass
class Faults:
    delay: float
    jitter: float
    reset_every: float
    resetting: bool = True
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    live: set["Link"] = field(default_factory=set)
    resets: int = 0


@dataclass(eq=False)
class Link:
    """One proxied connection: the client's and the target's writers."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter

    def reset(self) -> None:
        for writer in (self.client, self.target):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, as a middlebox dropping state would
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, faults: Faults) -> None:
    """Copy one direction, each chunk delivered `delay` (+ jitter) after it arrived, never reordered."""
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await held.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    last_due = 0.0
    try:
        while data := await reader.read(65536):
            last_due = max(last_due, loop.time() + faults.delay + faults.rng.uniform(0, faults.jitter))
            held.put_nowait((last_due, data))
    except ConnectionError:
        pass
    held.put_nowait((last_due, b""))
    try:
        await delivering
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()  # one direction ended: so does the connection (no half-closed talk here)


async def serve(target: tuple[str, int], faults: Faults, listen: tuple[str, int]) -> asyncio.Server:
    async def accept(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.transport.abort()
            return
        link = Link(client_writer, target_writer)
        faults.live.add(link)
        try:
            await asyncio.gather(
                carry(client_reader, target_writer, faults), carry(target_reader, client_writer, faults)
            )
        finally:
            faults.live.discard(link)

    return await asyncio.start_server(accept, *listen)


async def reset_now_and_then(faults: Faults) -> None:
    while True:
        await asyncio.sleep(faults.reset_every * faults.rng.uniform(0.5, 1.5))
        if faults.resetting and faults.live:
            link = faults.rng.choice(sorted(faults.live, key=id))
            faults.live.discard(link)
            link.reset()
            faults.resets += 1
            print(f"reset {faults.resets}", flush=True)


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.2, help="seconds added in each direction")
    parser.add_argument("--jitter", type=float, default=0.05, help="up to this much more, at random")
    parser.add_argument("--reset-every", type=float, default=3.0, help="mean seconds between resets")
    parser.add_argument("--resets-on-signal", action="store_true", help="reset only after SIGUSR1")
    parser.add_argument("routes", nargs="+", help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    args = parser.parse_args(argv)
    faults = Faults(args.delay, args.jitter, args.reset_every, resetting=not args.resets_on_signal)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: setattr(faults, "resetting", True))
    for route in args.routes:
        listen, target = route.split("=")
        await serve(_address(target), faults, _address(listen))
    print("listening", flush=True)
    await reset_now_and_then(faults)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

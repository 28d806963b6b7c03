"""Starting a cluster process once the processes it must connect to are listening.

Each Bytewax process connects to every process of a lower index, and on a refused
connection its networking layer waits a whole second before it tries again. The
processes of `--processes N` start together, so a process that got through its imports
first met a peer that was not listening yet in about two runs of five, and the run
started a second later (a 2-process replay of 1M lines lasts about 40 s).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"  # the state column's code for a listening socket
POLL_S = 0.01
WAIT_S = 10.0  # after this, leave the retrying to Bytewax as before


def listening_ports(tables: tuple[Path, ...] = PROC_TABLES) -> set[int] | None:
    """The TCP ports something listens on in this network namespace; None where /proc cannot tell."""
    ports: set[int] = set()
    readable = False
    for table in tables:
        try:
            text = table.read_text()
        except OSError:
            continue
        readable = True
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if readable else None


def _local_port(address: str) -> int | None:
    """The port of a host:port on this machine (loopback or one of its names); None otherwise."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        if ipaddress.ip_address(host).is_loopback:
            return int(port)
    except ValueError:
        if host in ("localhost", socket.gethostname()):
            return int(port)
    return None


def wait_for_peers(addresses: list[str], process_id: int, wait_s: float = WAIT_S,
                   tables: tuple[Path, ...] = PROC_TABLES) -> float:
    """Wait until the lower-index processes on this machine listen; return the seconds waited.

    Only looks (in /proc): a probe connection would count as a peer's. Peers on other
    machines, or a system without /proc, are not waited for: Bytewax retries as before.
    """
    ports = {p for p in (_local_port(a) for a in addresses[:process_id]) if p is not None}
    started = time.monotonic()
    while ports:
        listening = listening_ports(tables)
        if listening is None:
            break
        ports -= listening
        if not ports or time.monotonic() - started >= wait_s:
            break
        time.sleep(POLL_S)
    return time.monotonic() - started

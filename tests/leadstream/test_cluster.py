"""A cluster process waits for the lower-index processes on this machine to listen, and only for those."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from leadstream.cluster import listening_ports, wait_for_peers


@pytest.fixture
def free_port() -> Iterator[tuple[socket.socket, int]]:
    """A socket bound to a loopback port that nothing listens on yet."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def test_listening_ports_sees_a_listener_and_not_a_bound_socket(free_port: tuple[socket.socket, int]) -> None:
    """Bound is not listening: only listen() puts the port in the table."""
    sock, port = free_port
    assert port not in (listening_ports() or set())
    sock.listen()
    assert port in (listening_ports() or set())


def test_the_wait_ends_when_the_lower_process_starts_listening(free_port: tuple[socket.socket, int]) -> None:
    """Process 1 starts first and waits about as long as process 0 takes to listen."""
    sock, port = free_port
    timer = threading.Timer(0.3, sock.listen)
    timer.start()
    try:
        waited = wait_for_peers([f"127.0.0.1:{port}", "127.0.0.1:1"], 1, wait_s=5.0)
    finally:
        timer.join()
    assert 0.25 <= waited < 2.0


@pytest.mark.parametrize("addresses, process_id", [
    (["127.0.0.1:{idle}", "127.0.0.1:{listening}"], 0),  # process 0 connects to nobody
    (["10.255.255.1:{idle}", "127.0.0.1:{listening}"], 1),  # a peer on another machine: Bytewax retries as before
    (["127.0.0.1:{listening}", "127.0.0.1:{idle}"], 1),  # the lower peer listens; {idle} is this process's own
], ids=["first_process", "remote_peer", "own_address"])
def test_nothing_to_wait_for(free_port: tuple[socket.socket, int], addresses: list[str], process_id: int) -> None:
    """No lower-index peer on this machine that is not listening yet: no wait."""
    _, idle = free_port
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        filled = [a.format(idle=idle, listening=listener.getsockname()[1]) for a in addresses]
        assert wait_for_peers(filled, process_id, wait_s=5.0) < 0.5


def test_a_peer_that_never_listens_is_left_to_bytewax_after_the_limit(free_port: tuple[socket.socket, int]) -> None:
    """The wait is bounded: after wait_s, Bytewax's own retries take over."""
    _, port = free_port
    waited = wait_for_peers([f"127.0.0.1:{port}", "127.0.0.1:1"], 1, wait_s=0.2)
    assert 0.2 <= waited < 1.0


def test_without_proc_tables_nothing_is_waited_for(free_port: tuple[socket.socket, int], tmp_path: Path) -> None:
    """A system without /proc/net: no wait at all."""
    _, port = free_port
    missing = (tmp_path / "tcp", tmp_path / "tcp6")
    assert listening_ports(missing) is None
    assert wait_for_peers([f"127.0.0.1:{port}", "127.0.0.1:1"], 1, wait_s=5.0, tables=missing) < 0.1


def test_a_cluster_process_that_fails_ends_the_others_whichever_it_is() -> None:
    """The second of two processes fails while the first waits (for it, in a real cluster): the wait ends at once
    with the failure, where checking the processes in order never looked past the first, still running."""
    import subprocess
    import sys
    import time

    from leadstream.commands import wait_for_cluster

    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    started = time.monotonic()
    try:
        failed = wait_for_cluster([waiting, failing])
    finally:
        waiting.kill()
    assert failed == [(1, 2)]
    assert time.monotonic() - started < 20 and waiting.returncode is not None


def test_processes_stopped_as_asked_are_not_failures() -> None:
    """After the parent forwarded a stop, a process that finished and exited 128 + SIGTERM is no failure, and the
    others are left to finish; before a stop, the same exit ends the cluster as a crash."""
    import subprocess
    import sys
    import time

    from leadstream.commands import wait_for_cluster

    stopped = "raise SystemExit(143)"
    finishing = "import time; time.sleep(1.0)"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for code in (stopped, finishing)]
    assert wait_for_cluster(procs, lambda: True) == []
    assert [p.returncode for p in procs] == [143, 0]  # the second finished, it was not killed
    procs = [subprocess.Popen([sys.executable, "-c", code]) for code in (stopped, "import time; time.sleep(60)")]
    started = time.monotonic()
    assert wait_for_cluster(procs, lambda: False) == [(0, 143)]
    assert time.monotonic() - started < 20 and procs[1].returncode is not None


@pytest.mark.parametrize(("sig", "process_id"), [(signal.SIGTERM, 0), (signal.SIGINT, 0), (signal.SIGTERM, 1)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-second-process"])
def test_a_process_waiting_for_its_peers_stops_when_asked(tmp_path: Path, sig: signal.Signals, process_id: int) -> None:
    """One process of a --process-id/--addresses cluster whose peer never comes waits inside Bytewax, where the
    signal handlers do not run: SIGTERM and SIGINT were ignored for ever. It now ends at once, saying why."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "page", "anonymousId": "a-1", "messageId": "m-1", "timestamp": "2026-01-05T08:00:00Z"}\n')
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "run", "--config", str(root / "examples" / "marketing.toml"),
         "--input", str(events), "--warehouse", str(tmp_path / "w.duckdb"), "--triggers", str(tmp_path / "t.jsonl"),
         "--process-id", str(process_id), "--addresses", f"127.0.0.1:{ports[0]};127.0.0.1:{ports[1]}", "--quiet"],
        cwd=root, stderr=subprocess.PIPE, text=True)
    try:
        if process_id == 1:
            time.sleep(1.5)  # it waits for process 0 to listen first (leadstream.cluster), up to 10 s
        deadline = time.monotonic() + 60
        while process_id == 0 and time.monotonic() < deadline and ports[0] not in (listening_ports() or set()):
            time.sleep(0.05)  # listening: it waits for process 1 now
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig
    assert "stopped while waiting for the cluster's other processes to connect" in err, err

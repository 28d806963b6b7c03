"""The webhook sink against a local HTTP server that fails intermittently."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from .conftest import run_into, trigger_ids

pytestmark = pytest.mark.slow


class Receiver(http.server.ThreadingHTTPServer):
    """Records every batch it takes; fails requests by a fixed pattern."""

    def __init__(self, fail_every: int = 0, always_fail: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail_every = fail_every
        self.always_fail = always_fail
        self.requests = 0
        self.attempts: dict[str, int] = {}  # per Idempotency-Key
        self.batches = 0
        self.lock = threading.Lock()
        self.received: list[dict] = []  # every trigger of every batch it accepted (or processed and failed)
        self.keys_ok = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers.get("Idempotency-Key", "")
        with srv.lock:
            srv.requests += 1
            attempt = srv.attempts[key] = srv.attempts.get(key, 0) + 1
            if attempt == 1:
                srv.batches += 1
            batch = srv.batches
        if srv.always_fail:
            self.send_response(503)
            self.end_headers()
            return
        # Intermittent: some batches fail once or twice before they go through (never more).
        lost = srv.fail_every and batch % srv.fail_every == 0 and attempt <= 2
        if lost:
            # Fails before taking the batch: a lost request.
            self.send_response(503)
            self.end_headers()
            return
        triggers = orjson.loads(body)["triggers"]
        with srv.lock:
            srv.keys_ok &= key == ",".join(t["trigger_id"] for t in triggers)
            srv.received.extend(triggers)
        if srv.fail_every and batch % srv.fail_every == 1 and attempt == 1:
            # Took the batch but answered an error: the retry delivers it twice.
            self.send_response(500)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    srv = Receiver(**getattr(request, "param", {}))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("receiver", [{"fail_every": 3}], indirect=True)
def test_webhook_delivers_every_trigger_despite_failures(receiver: Receiver, clickstream: Path, baseline: Path,
                                                        tmp_path: Path) -> None:
    """A third of the requests fail (some after the receiver took the batch): nothing lost, dedupe by id leaves none twice."""
    res = run_into(tmp_path, [clickstream], "--webhook", receiver.url, "--webhook-backoff", "0.01", "--processes", "2")
    assert f"webhook        {receiver.url}: every batch delivered" in res.stdout
    want = sorted(trigger_ids(baseline / "triggers.jsonl"))
    got = [t["trigger_id"] for t in receiver.received]
    assert len(got) > len(set(got))  # the failures after taking a batch really did cause repeats
    assert max(receiver.attempts.values()) == 3  # some batches needed two retries
    assert sorted(set(got)) == want  # nothing lost; after dedupe by trigger_id, nothing doubled
    assert receiver.keys_ok  # each batch carried its trigger ids in the Idempotency-Key header
    dead = [orjson.loads(x) for x in (tmp_path / "dead_letters.jsonl").read_bytes().splitlines()]
    assert not [d for d in dead if d["reason"] == "webhook_failed"]
    # The JSONL sink is unaffected.
    assert sorted(trigger_ids(tmp_path / "triggers.jsonl")) == want


@pytest.mark.parametrize("receiver", [{"always_fail": True}], indirect=True)
def test_webhook_dead_letters_a_batch_after_the_last_attempt(receiver: Receiver, clickstream: Path, baseline: Path,
                                                             tmp_path: Path) -> None:
    """A receiver that always fails: every batch is tried N times, then dead-lettered with its triggers as raw."""
    res = run_into(tmp_path, [clickstream], "--webhook", receiver.url, "--webhook-attempts", "2", "--webhook-backoff",
                   "0.01", "--webhook-batch", "500")
    dead = [orjson.loads(x) for x in (tmp_path / "dead_letters.jsonl").read_bytes().splitlines()]
    failed = [d for d in dead if d["reason"] == "webhook_failed"]
    assert f"webhook        {receiver.url}: {len(failed)} batches NOT delivered after every retry" in res.stdout
    assert failed and all("failed 2 times" in d["detail"] and d["source"] == f"webhook:{receiver.url}" for d in failed)
    ids = sorted(t["trigger_id"] for d in failed for t in orjson.loads(d["raw"])["triggers"])
    assert ids == sorted(trigger_ids(baseline / "triggers.jsonl"))
    assert receiver.requests == 2 * len(failed)

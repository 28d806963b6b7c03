"""The webhook sink: POST batches of triggers to an actioner's URL, with retries and dead letters.

Each batch is ``{"triggers": [trigger, ...]}`` (at most ``batch_size`` triggers) with an
``Idempotency-Key`` header carrying the batch's trigger ids, comma-separated, so a receiver
can recognise a batch it already took. Delivery is at least once: a failed attempt (no
answer, a timeout, HTTP 408, 429 or 5xx) is retried with exponential backoff; after
``attempts`` failures, or at once on any other 4xx, the batch goes to the dead letters
with reason ``webhook_failed`` and the batch body as ``raw``. A resumed run repeats the
resume epoch's batches, so receivers dedupe by ``trigger_id``.

It is a step of the flow rather than a sink, because what it cannot deliver must go on to
the dead-letter output. The flow gathers trigger lines per group of shards for up to
``COLLECT_MS`` first (``op.collect``), so batches are full rather than one per shard output. Retrying blocks the worker that holds the batch: back-pressure,
so a slow receiver slows the flow instead of piling up triggers in memory.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import orjson

from .progress import timed

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
COLLECT_MS = 200  # how long the flow gathers triggers for one delivery
GROUPS = 8  # shard groups that deliver independently (spread over the workers)


@dataclass
class WebhookDelivery:
    """Delivers ("triggers", "line\\nline...") items; returns dead-letter items for batches it gave up on."""

    url: str
    attempts: int = 5
    backoff_s: float = 0.2  # first retry delay; doubles each time
    max_backoff_s: float = 5.0
    timeout_s: float = 10.0
    batch_size: int = 100

    @timed("outputs")
    def __call__(self, item: tuple[str, list[str]]) -> list[tuple[str, str]]:
        """POST the triggers of (key, [newline-separated trigger lines, ...]) in batches; dead letters for failures."""
        lines = [line for text in item[1] for line in text.split("\n") if line]
        dead: list[str] = []
        for i in range(0, len(lines), self.batch_size):
            chunk = lines[i:i + self.batch_size]
            error = self.post(chunk)
            if error is not None:
                body = self.body(chunk).decode()
                dead.append(orjson.dumps({"reason": "webhook_failed", "detail": error, "raw": body,
                                          "source": f"webhook:{self.url}"}).decode())
        return [("dead_letters", "\n".join(dead))] if dead else []

    @staticmethod
    def body(lines: list[str]) -> bytes:
        """The JSON body: the trigger lines are JSON objects already."""
        return b'{"triggers":[' + ",".join(lines).encode() + b"]}"

    def post(self, lines: list[str]) -> str | None:
        """Send one batch; None when the receiver took it, else why it was given up on."""
        ids = ",".join(str(orjson.loads(line)["trigger_id"]) for line in lines)
        data = self.body(lines)
        delay = self.backoff_s
        why = ""
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(self.url, data=data, method="POST", headers={
                "Content-Type": "application/json", "Idempotency-Key": ids})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    resp.read()
                    return None
            except urllib.error.HTTPError as ex:
                why = f"HTTP {ex.code}"
                if ex.code not in RETRY_STATUS:
                    return f"POST {self.url}: {why} (not retried)"
            except (urllib.error.URLError, OSError) as ex:  # refused, reset, timeout
                why = str(getattr(ex, "reason", ex))
            if attempt < self.attempts:
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        return f"POST {self.url}: failed {self.attempts} times, last: {why}"

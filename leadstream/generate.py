"""Deterministic synthetic Segment-spec clickstream (JSONL) for demos, tests and benchmarks.

Every person is a small state machine (a Python generator) that walks through
visits, identifies, fills forms, fills carts and reads e-mails.  People are
interleaved in event time with a heap; on top of that stream the writer mixes
in deliberately malformed lines, verbatim duplicates, bounded disorder, late
arrivals and a hot-key bot.  The same options always give the same bytes.
"""

from __future__ import annotations

import gc
import gzip
import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice
from math import log
from typing import BinaryIO

import orjson

__all__ = ["GenerateOptions", "GenerateStats", "generate_lines", "write_events"]


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate; identical options give identical output bytes."""

    events: int = 10_000  # number of lines to write (including malformed and duplicate lines)
    contacts: int = 1_000  # number of distinct people (each has 1..devices_per_user devices)
    seed: int = 0
    start: str = "2026-01-05T08:00:00Z"  # event time of the first event (ISO-8601)
    identify_share: float = 0.3  # share of people who ever identify (give an e-mail => userId)
    malformed_share: float = 0.005  # share of lines that are deliberately bad
    duplicate_share: float = 0.002  # share of lines that repeat an earlier line verbatim
    disorder_seconds: float = 2.0  # max timestamp displacement vs line position
    late_share: float = 0.0  # share of events written 60 s..1 h after their timestamp
    bot_share: float = 0.0  # share of events from the single bot anonymousId "anon-bot"
    devices_per_user: int = 3  # upper bound of devices per person; merge storms use e.g. 50
    days: float = 30.0  # span of event time covered (approximate; very dense settings stretch it)


@dataclass
class GenerateStats:
    """Counts of what a generation run wrote."""

    lines: int = 0
    malformed: int = 0
    duplicates: int = 0
    late: int = 0
    people: int = 0
    identified: int = 0  # people who identified at least once


SITE = "https://www.leadstream.example"
BOT_ID = "anon-bot"
BOT_AGENT = "Mozilla/5.0 (compatible; LeadScraper/1.0; +http://scraper.example)"
MALFORMED_KINDS = (
    "truncated_json", "not_an_object", "unknown_type", "no_identity", "bad_timestamp",
    "junk_user_id", "oversize", "wrong_type", "empty_line",
)
JUNK_USER_IDS = ("anonymous", "null", "undefined", "0", "", "   ")
OVERSIZE_BYTES = 33 * 1024  # just above the 32 KB event limit of the Segment HTTP API

BLOG_POSTS = {
    "ai-lead-scoring": "AI Lead Scoring Explained", "gdpr-consent-guide": "The GDPR Consent Guide",
    "b2b-attribution": "B2B Attribution Without Tears", "intent-data-101": "Intent Data 101",
    "marketing-ops-checklist": "The Marketing Ops Checklist", "webinar-playbook": "Our Webinar Playbook",
    "security-whitepaper": "Security Whitepaper",
}
PRODUCTS = (("analytics", 49.0), ("scoring", 99.0), ("journeys", 149.0), ("warehouse", 299.0))
TOPICS = ("ai", "pricing", "security", "integrations", "gdpr")
WEBINARS = (("ai-lead-scoring-live", "ai"), ("security-deep-dive", "security"), ("pricing-q-and-a", "pricing"))
PLANS = ("starter", "growth", "enterprise")
# (source, medium, name, landing path, referrer)
CAMPAIGNS = (
    ("linkedin", "paid_social", "ai-launch-2026", "/blog/ai-lead-scoring", "https://www.linkedin.com/"),
    ("google", "cpc", "brand-search", "/pricing", "https://www.google.com/"),
    ("google", "cpc", "enterprise-security", "/pricing/enterprise", "https://www.google.com/"),
    ("newsletter", "email", "january-digest", "/webinars", ""),
    ("facebook", "paid_social", "retargeting-q1", "/", "https://www.facebook.com/"),
)
NEWSLETTER = 3  # index into CAMPAIGNS used when an e-mail link brings someone back
ORGANIC_REFERRERS = ("", "", "https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/")

FIRST_NAMES = ("Anna", "Lukas", "Sophie", "Maximilian", "Marie", "Felix", "Emma", "Jonas",
               "Léa", "Paul", "Hannah", "Noah", "Olivia", "James", "Chloé", "Louis")
LAST_NAMES = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
              "Smith", "Jones", "Martin", "Bernard", "Groß", "Öztürk")
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "Ö": "Oe"})
# Repeats weight the draw: Munich and practitioners must be common enough for segment demos.
TITLES = ("Student", "CEO", "CTO", "VP Marketing", "Director of Sales", "Marketing Manager",
          "Marketing Manager", "Engineer", "Engineer", "Head of Growth")
CITIES = (("Munich", "DE"), ("Munich", "DE"), ("Munich", "DE"), ("Berlin", "DE"), ("Hamburg", "DE"),
          ("London", "GB"), ("Paris", "FR"), ("Vienna", "AT"), ("Zurich", "CH"))
# (name, e-mail domain, company_size, industry)
COMPANIES = (
    ("Alpenblick Software", "alpenblick.example", 120, "Software"),
    ("Isarwerk Maschinenbau", "isarwerk.example", 2400, "Manufacturing"),
    ("Nordlicht Logistik", "nordlicht.example", 850, "Logistics"),
    ("Spreeforge", "spreeforge.example", 35, "Software"),
    ("Thames Capital", "thamescapital.example", 5200, "Financial Services"),
    ("Lumière Santé", "lumiere-sante.example", 640, "Healthcare"),
    ("Hafenkontor Retail", "hafenkontor.example", 15000, "Retail"),
    ("Brezn Labs", "breznlabs.example", 12, "Software"),
    ("Universität Beispielstadt", "uni-beispiel.example", 9000, "Education"),
    ("Seine Analytics", "seine-analytics.example", 300, "Software"),
)
CONSENT = {
    flag: {"categoryPreferences": {"analytics": True, "marketing": flag}} for flag in (True, False)
}
APP_CONTEXT = {"name": "Leadstream", "version": "3.2.1", "build": "321"}


def _page(path: str, title: str) -> tuple[str, str, str, dict]:
    """(path, url, title, properties) of one site page; properties are shared, never mutated."""
    url = SITE + path
    return path, url, title, {"path": path, "url": url, "title": title}


PAGES = (
    [_page("/", "Home")] * 3
    + [_page(f"/blog/{slug}", title) for slug, title in BLOG_POSTS.items()]
    + [_page("/pricing", "Pricing")] * 3
    + [_page("/pricing/enterprise", "Enterprise Pricing")]
    + [_page(f"/product/{p}", f"{p.title()} Product") for p, _ in PRODUCTS]
    + [_page("/webinars", "Webinars"), _page("/contact", "Contact")]
)
PAGE_BY_PATH = {p[0]: p for p in PAGES}
CART_PAGES = {"/pricing": None, "/pricing/enterprise": None} | {f"/product/{p}": (p, v) for p, v in PRODUCTS}

_HH_MM = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SS = [f"{sec:02d}." for sec in range(60)]
_MMM_Z = [f"{ms:03d}Z" for ms in range(1000)]

MIN_VISIT_GAP_MS = 30 * 60_000  # sessionisation boundary: anything shorter is one visit
EVENTS_PER_VISIT = 3.6  # measured mean of _Run._person; calibrates the visit rate to `days`


MAX_CONTACTS = 10_000_000  # a list slot, a heap entry and an offset each: about 100 bytes


def check_options(opts: GenerateOptions) -> None:
    """Reject options that cannot produce a meaningful stream, naming the command-line flag (ValueError)."""
    problems = []
    if opts.events < 0:
        problems.append(f"--events must be 0 or more, got {opts.events}")
    if not 1 <= opts.contacts <= MAX_CONTACTS:
        problems.append(f"--contacts must be from 1 to {MAX_CONTACTS:,}, got {opts.contacts}")
    if opts.devices_per_user < 1:
        problems.append(f"--devices-per-user must be 1 or more, got {opts.devices_per_user}")
    if not (math.isfinite(opts.days) and opts.days > 0):
        problems.append(f"days must be a positive number, got {opts.days}")
    if not (math.isfinite(opts.disorder_seconds) and 0 <= opts.disorder_seconds <= 86_400):
        problems.append(f"--disorder must be from 0 to 86400 seconds, got {opts.disorder_seconds}")
    shares = {"identify_share": opts.identify_share, "--malformed-share": opts.malformed_share,
              "--duplicate-share": opts.duplicate_share, "--late-share": opts.late_share,
              "--bot-share": opts.bot_share}
    bad = [f"{flag} must lie in 0..1, got {value}" for flag, value in shares.items() if not 0.0 <= value <= 1.0]
    problems.extend(bad)
    if not bad and opts.malformed_share + opts.duplicate_share + opts.bot_share > 1.0:
        problems.append("--malformed-share + --duplicate-share + --bot-share must not exceed 1 (people's own "
                        f"events are the rest), got {opts.malformed_share + opts.duplicate_share + opts.bot_share:g}")
    if problems:
        raise ValueError("; ".join(problems))


class _Run:
    """One generation run: the people, the event-time heap and the line mixer."""

    def __init__(self, opts: GenerateOptions) -> None:
        check_options(opts)
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.stats = GenerateStats()
        start = datetime.fromisoformat(opts.start.replace("Z", "+00:00"))
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self.start_ms = int(start.timestamp() * 1000)
        self._day_prefix: dict[int, str] = {}
        self._minute, self._minute_prefix = -1, ""

        # Calibrate visit starts and intervals so the person events spread over `days`.  A person
        # starting at s (uniform in [0, window)) makes 1 + (span - s) / interval visits by the end.
        span_ms = opts.days * 86_400_000
        person_events = opts.events * (1 - opts.malformed_share - opts.duplicate_share - opts.bot_share)
        visits = person_events / (opts.contacts * EVENTS_PER_VISIT)  # per contact within the span
        if visits >= 1.5:  # steady state: starts spread over one visit interval
            interval = span_ms / (visits - 0.5)
            window = interval
        elif visits > 1:
            interval = span_ms / (2 * (visits - 1))
            window = span_ms
        else:  # not even one visit each: only some contacts show up, each once
            interval = 10 * span_ms
            window = span_ms / max(visits, 1e-9)
        # Dense settings would need visits < 30 min apart; then the span stretches instead.
        self.extra_gap_ms = max(60_000.0, interval - MIN_VISIT_GAP_MS - 2 * 60_000)

        # The heap holds plain ints (event time << shift | person): int comparisons are much
        # cheaper than tuple ones, and the heap is touched once per line.  People start lazily
        # at their first event, so contacts that never show up cost no generator.
        self.shift = opts.contacts.bit_length()
        self.people: list[Iterator[tuple[int, dict]] | None] = [None] * opts.contacts
        self.pending: list[dict | None] = [None] * opts.contacts  # each person's next event
        offsets = [0] + [int(self.rng.random() * window) for _ in range(1, opts.contacts)]
        self.heap = [offset << self.shift | i for i, offset in enumerate(offsets)]
        heapq.heapify(self.heap)

    # -- time -------------------------------------------------------------------------------
    def iso(self, ms: int) -> str:
        """ISO-8601 UTC with milliseconds for an epoch-ms value; cached lookups beat datetime 5x."""
        minute, rem = divmod(ms, 60_000)
        if minute != self._minute:  # dense streams stay in one minute for many events
            day, minute_of_day = divmod(minute, 1440)
            prefix = self._day_prefix.get(day)
            if prefix is None:
                date = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)
                prefix = self._day_prefix[day] = date.strftime("%Y-%m-%dT")
            self._minute, self._minute_prefix = minute, prefix + _HH_MM[minute_of_day]
        return self._minute_prefix + _SS[rem // 1000] + _MMM_Z[rem % 1000]

    def quick_gap(self) -> int:
        """Milliseconds between events fired by one user action (identify + track)."""
        return 50 + int(self.rng.random() * 800)

    def visit_gap(self) -> int:
        """Milliseconds between two visits: always beyond the 30-minute session boundary."""
        return MIN_VISIT_GAP_MS + int(self.rng.expovariate(1 / self.extra_gap_ms))

    # -- people -----------------------------------------------------------------------------
    def _person(self, i: int) -> Iterator[tuple[int, dict]]:
        """Yield (delay in ms since this person's previous event, event) forever.

        Events lack messageId/timestamp values; the mixer fills them in when it writes them.
        """
        rng, r, opts = self.rng, self.rng.random, self.opts
        n_dev = min(opts.devices_per_user, 1 + int(opts.devices_per_user * r() ** 2))
        anon = [f"anon-{rng.getrandbits(64):016x}" for _ in range(n_dev)]
        mobile = [d > 0 and r() < 0.3 for d in range(n_dev)]  # later devices are sometimes the app
        marketing = [r() < 0.75 for _ in range(n_dev)]
        linked = [False] * n_dev  # device already carries the userId
        user_id = f"user-{i}"
        converts = r() < opts.identify_share
        traits: dict | None = None
        cart: list[tuple[str, float]] = []
        webinar: tuple[str, str] | None = None  # registered, not yet attended
        grouped = False
        orders = 0
        dev = 0
        n_site_pages = len(PAGES)

        def ev(kind: str, label: str, props: dict, context: dict) -> dict:
            """A track/page/screen event of the current device; label is its `event` or `name`.

            The None slots (filled by the mixer) fix a natural key order, and one dict literal
            per shape is presized, which is measurably faster than adding keys one by one.
            """
            if r() < 0.92:  # most, not all, events carry consent: the engine must handle both
                context["consent"] = CONSENT[marketing[dev]]
            if linked[dev]:
                return {"type": kind, "event" if kind == "track" else "name": label, "messageId": None,
                        "timestamp": None, "anonymousId": anon[dev], "userId": user_id,
                        "context": context, "properties": props}
            return {"type": kind, "event" if kind == "track" else "name": label, "messageId": None,
                    "timestamp": None, "anonymousId": anon[dev], "context": context, "properties": props}

        def linking(kind: str, **fields) -> dict:
            """An identify, alias or group call: it (re)links the current device to the userId."""
            linked[dev] = True
            context = {"consent": CONSENT[marketing[dev]]} if r() < 0.92 else {}
            return {"type": kind, "messageId": None, "timestamp": None, "anonymousId": anon[dev],
                    "userId": user_id, **fields, "context": context, "properties": {}}

        def server(name: str, props: dict) -> dict:
            """A track event sent by a backend (ESP, webinar tool): userId only, no device."""
            return {"type": "track", "event": name, "messageId": None, "timestamp": None,
                    "userId": user_id, "context": {"library": {"name": "leadstream-webhooks"}},
                    "properties": props}

        def identify() -> dict:
            """Link the current device to the userId; full traits on the first time only."""
            nonlocal traits
            if traits is None:
                first, last = FIRST_NAMES[int(r() * len(FIRST_NAMES))], LAST_NAMES[int(r() * len(LAST_NAMES))]
                company, domain, size, industry = COMPANIES[int(r() * len(COMPANIES))]
                city, country = CITIES[int(r() * len(CITIES))]
                local = f"{first}.{last}".lower().translate(_ASCII)
                traits = {"email": f"{local}.{i}@{domain}", "first_name": first, "last_name": last,
                          "title": TITLES[int(r() * len(TITLES))], "company": company,
                          "company_size": size, "industry": industry, "city": city, "country": country}
                shown = traits
            else:
                shown = {"email": traits["email"]}  # a later login only re-sends the e-mail
            return linking("identify", traits=shown)

        gap = 0
        visit = 0
        while True:
            campaign = CAMPAIGNS[int(r() * len(CAMPAIGNS))] if r() < 0.3 else None
            if traits is not None and visit:
                # Between visits the backends report on known people.
                if webinar is not None and r() < 0.6:
                    yield gap, server("Webinar Attended", {"webinar": webinar[0], "topic": webinar[1]})
                    gap, webinar = self.visit_gap() // 4, None
                if r() < 0.4:
                    email_id = f"e-{opts.seed}-{i}-{visit}"
                    yield gap, server("Email Opened", {"email_id": email_id, "subject": "January digest"})
                    gap = 5_000 + int(r() * 600_000)
                    if r() < 0.4:
                        yield gap, server("Email Link Clicked", {"email_id": email_id, "link_url": SITE + "/webinars"})
                        gap, campaign = 2_000 + int(r() * 8_000), CAMPAIGNS[NEWSLETTER]
            visit += 1
            dev = 0 if visit == 1 or r() < 0.5 else int(r() * n_dev)
            if r() < 0.02:
                marketing[dev] = not marketing[dev]  # consent is granted or withdrawn now and then
            # Unlinked devices of converting people convert (or log in) in about half their visits.
            convert = converts and not linked[dev] and r() < 0.5
            n_pages = 1 + min(int(rng.expovariate(1 / 2.5)), 20)
            referrer = ""

            for n in range(n_pages):
                last = n == n_pages - 1
                if mobile[dev]:
                    title = PAGES[int(r() * len(PAGES))][2]
                    context = {"app": APP_CONTEXT, "device": {"type": "ios"}}
                    yield gap, ev("screen", title, {"name": title}, context)
                    path = ""
                elif n == 0 and campaign is not None:
                    source, medium, name, path, referrer = campaign
                    url = f"{SITE}{path}?utm_source={source}&utm_medium={medium}&utm_campaign={name}"
                    title = PAGE_BY_PATH[path][2]
                    context = {"page": {"path": path, "url": url, "referrer": referrer},
                               "campaign": {"source": source, "medium": medium, "name": name}}
                    yield gap, ev("page", title, {"path": path, "url": url, "title": title}, context)
                    referrer = url
                else:
                    if last and convert and traits is None:  # steer the visit to a conversion page
                        path, url, title, props = PAGE_BY_PATH[("/contact", "/webinars", "/pricing")[int(r() * 3)]]
                    else:
                        path, url, title, props = PAGES[int(r() * n_site_pages)]
                    if n == 0:
                        referrer = ORGANIC_REFERRERS[int(r() * len(ORGANIC_REFERRERS))]
                    context = {"page": {"path": path, "url": url, "referrer": referrer}}
                    yield gap, ev("page", title, props, context)
                    referrer = url
                # Seconds to minutes until the next click: 2 s + Exp(mean 30 s), capped at 10 min
                # (expovariate inlined, as this runs for most events).
                gap = 2_000 + min(int(-log(1.0 - r()) * 30_000), 600_000)

                if path in CART_PAGES and r() < 0.2:
                    product, price = CART_PAGES[path] or PRODUCTS[int(r() * len(PRODUCTS))]
                    cart.append((product, price))
                    yield self.quick_gap(), ev("track", "Product Added", {"product_id": product, "price": price}, {})

                if last and convert:
                    if traits is not None:
                        # A known person on a new device: login identify, or the odd legacy alias call.
                        if r() < 0.15:
                            yield self.quick_gap(), linking("alias", previousId=anon[dev])
                        else:
                            yield self.quick_gap(), identify()
                    elif path in ("/contact", "/webinars"):
                        topic = TOPICS[int(r() * len(TOPICS))]
                        yield self.quick_gap(), identify()
                        form = "contact" if path == "/contact" else "webinar-registration"
                        yield self.quick_gap(), ev("track", "Form Submitted", {"form": form, "topic": topic}, {})
                        if path == "/webinars":
                            webinar = WEBINARS[int(r() * len(WEBINARS))]
                            yield self.quick_gap(), ev("track", "Webinar Registered",
                                                       {"webinar": webinar[0], "topic": webinar[1]}, {})
                    else:
                        yield self.quick_gap(), identify()
                        yield self.quick_gap(), ev("track", "Signed Up", {"plan": PLANS[int(r() * len(PLANS))]}, {})
                    if traits is not None and not grouped and r() < 0.3:
                        grouped = True
                        name, _, _, industry = next(c for c in COMPANIES if c[0] == traits["company"])
                        group_id = "grp-" + name.lower().translate(_ASCII).replace(" ", "-")
                        group_traits = {"name": name, "industry": industry}
                        yield self.quick_gap(), linking("group", groupId=group_id, traits=group_traits)
                elif linked[dev] and path in ("/contact", "/webinars") and r() < 0.3:
                    # Known people submit further forms without a fresh identify.
                    topic = TOPICS[int(r() * len(TOPICS))]
                    yield self.quick_gap(), ev("track", "Form Submitted", {"form": path.strip("/"), "topic": topic}, {})

            if cart and r() < 0.35:  # otherwise the cart stays abandoned (it may convert later)
                orders += 1
                revenue = round(sum(price for _, price in cart), 2)
                products = [{"product_id": p, "price": v} for p, v in cart]
                props = {"order_id": f"o-{opts.seed}-{i}-{orders}", "revenue": revenue,
                         "currency": "EUR", "products": products}
                yield self.quick_gap(), ev("track", "Order Completed", props, {})
                cart = []
            gap = self.visit_gap()

    # -- the line mixer ---------------------------------------------------------------------
    def _bot_page(self) -> dict:
        """A page view of the scraper bot: one anonymousId, no consent, a crawler user agent."""
        path, url, title, props = PAGES[int(self.rng.random() * len(PAGES))]
        return {"type": "page", "name": title, "messageId": None, "timestamp": None, "anonymousId": BOT_ID,
                "context": {"page": {"path": path, "url": url, "referrer": ""}, "userAgent": BOT_AGENT},
                "properties": props}

    def _malformed(self, message_id: str, ts: str) -> bytes:
        """A deliberately bad line; kinds rotate so every kind shows up once there are nine."""
        rng, r = self.rng, self.rng.random
        kind = MALFORMED_KINDS[self.stats.malformed % len(MALFORMED_KINDS)]
        self.stats.malformed += 1
        path, url, title, props = PAGES[int(r() * len(PAGES))]
        e: dict = {"type": "page", "name": title, "messageId": message_id, "timestamp": ts,
                   "anonymousId": f"anon-{rng.getrandbits(64):016x}",
                   "context": {"page": {"path": path, "url": url, "referrer": ""}}, "properties": dict(props)}
        if kind == "empty_line":
            return b""
        if kind == "truncated_json":
            line = orjson.dumps(e)
            return line[: len(line) // 2]
        if kind == "not_an_object":
            return orjson.dumps([e] if r() < 0.5 else 42)
        if kind == "unknown_type":
            e["type"] = "click"
        elif kind == "no_identity":
            del e["anonymousId"]
        elif kind == "bad_timestamp":
            e["timestamp"] = ("yesterday", "1970-01-01T00:00:00.000Z", "2999-12-31T23:59:59.000Z")[int(r() * 3)]
        elif kind == "junk_user_id":
            # No anonymousId either, so the junk userId is the only identity the event offers.
            del e["anonymousId"]
            e["userId"] = JUNK_USER_IDS[int(r() * len(JUNK_USER_IDS))]
        elif kind == "oversize":
            e["properties"]["html"] = "<div>" + "x" * OVERSIZE_BYTES + "</div>"
        elif r() < 0.5:  # wrong_type
            e["properties"] = f"path={path}"
        else:
            # An object where an id goes (a numeric id is valid: Segment takes numbers).
            e["userId"] = {"id": 12345}
        return orjson.dumps(e)

    def lines(self) -> Iterator[bytes]:
        """Yield exactly opts.events lines (no trailing newline); fills self.stats when exhausted."""
        opts, stats, rng = self.opts, self.stats, self.rng
        # Locals instead of attributes: this loop runs once per line and dominates the runtime.
        r, dumps, iso, heap, people, pending = rng.random, orjson.dumps, self.iso, self.heap, self.people, self.pending
        shift = self.shift
        mask = (1 << shift) - 1
        heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
        p_bad = opts.malformed_share
        p_dup = p_bad + opts.duplicate_share
        p_bot = p_dup + opts.bot_share
        late_share = opts.late_share
        jitter = int(opts.disorder_seconds * 1000)
        prefix = f"m-{opts.seed}-"
        mid = 0  # messageId counter, not the line number: late lines are written out of order
        total, written, duplicates, late, identified = opts.events, 0, 0, 0, 0
        seen = 0  # contacts that have shown up so far
        start = self.start_ms
        # Lines a duplicate may copy; their timestamps let duplicates respect the disorder bound.
        recent: deque[tuple[int, bytes]] = deque(maxlen=8)
        delayed: list[tuple[int, int, bytes]] = []  # (release time, messageId counter, line)
        clock = start  # event time of the most recent person event; never decreases
        max_ts = start
        first = True
        while written < total:
            written += 1
            if delayed and (delayed[0][0] <= clock or total - written < len(delayed)):
                late += 1
                yield heappop(delayed)[2]
                continue
            x = r()
            if x < p_bad:
                mid += 1
                yield self._malformed(prefix + str(mid), iso(clock + int(r() * jitter)))
                continue
            if x < p_dup and recent:
                fresh = [line for ts, line in recent if ts >= max_ts - jitter]
                duplicates += 1
                yield fresh[int(r() * len(fresh))]
                continue
            mid += 1
            if x < p_bot:
                event = self._bot_page()
            else:
                key = heap[0]
                i = key & mask
                person, upcoming = people[i], pending[i]
                if person is None or upcoming is None:  # this person's first event
                    person = people[i] = self._person(i)
                    _, upcoming = next(person)  # the first delay is always 0
                    seen += 1
                event = upcoming
                delay, pending[i] = next(person)
                heapreplace(heap, key + (delay << shift))
                clock = start + (key >> shift)
                if event["type"] == "identify" and len(event["traits"]) > 1:
                    identified += 1  # only a first identify sends full traits
                if late_share and r() < late_share:
                    # Stamped now, but handed to the writer 60 s..1 h of event time later.
                    event["messageId"] = prefix + str(mid)
                    event["timestamp"] = iso(clock)
                    heappush(delayed, (clock + 60_000 + int(r() * 3_540_000), mid, dumps(event)))
                    written -= 1
                    continue
            # Every event lands 0..jitter ms after the clock, so none is more than
            # `jitter` ms older than any event written before it.
            ts = clock if first else clock + int(r() * (jitter + 1))
            first = False
            event["messageId"] = prefix + str(mid)
            event["timestamp"] = iso(ts)
            line = dumps(event)
            if ts > max_ts:
                max_ts = ts
            recent.append((ts, line))
            yield line
        stats.lines, stats.duplicates, stats.late, stats.identified = written, duplicates, late, identified
        stats.people = seen


def generate_lines(opts: GenerateOptions) -> Iterator[bytes]:
    """Yield opts.events JSONL lines, each without its trailing newline."""
    return _Run(opts).lines()


def write_events(opts: GenerateOptions, out: BinaryIO | gzip.GzipFile) -> GenerateStats:
    """Write opts.events newline-terminated lines to `out` and return what was written."""
    run = _Run(opts)
    lines = run.lines()
    # The live people (generators, pending events) are millions of long-lived objects with big
    # populations; full cyclic-GC passes over them cost up to 45 % of the runtime, while the
    # per-event garbage is acyclic and freed by refcounting anyway.  So pause the GC here,
    # where we own the whole loop (generate_lines cannot: its consumer runs in between).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # Small batches: per-line writes cost ~30 %, multi-MB joins thrash the allocator (measured).
        while batch := list(islice(lines, 64)):
            batch.append(b"")
            out.write(b"\n".join(batch))
    finally:
        if gc_was_enabled:
            gc.enable()
    return run.stats

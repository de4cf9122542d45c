"""`unhealthy` rules: the components' health endpoints, polled on a thread of their own.

An ingest worker serves `/health` on `PILOTS_INGEST_HTTP_PORT` (503 when the store or the
broker has been unreachable for a minute, or the spool is full); the API serves `/health`
(503 when the store does not answer). A rule of kind `unhealthy` (`core.alerts.rules`) names
one such URL; `HealthWatch` asks each every `every_s` and raises an alarm when one has been
unhealthy for the rule's `pending_s`, cleared once it has been healthy again for `clear_s`:

    watch = HealthWatch(rules)           # any rules: it keeps those of kind unhealthy
    watch.adopt(active_alarms)           # the store's active alarms, before start()
    watch.start()
    events = watch.drain()               # AlertEvents, for the outbox and the alarm store
    watch.replace_rules(new_rules)       # a reload
    watch.stop()

A 2xx answer is healthy. Anything else is unhealthy, with its reason: `HTTP 503` (and what
an ingest or API body says in its first `BODY_LIMIT` bytes: `HTTP 503: store unreachable for
75 s`), `connection refused`, `no answer within 5 s`, `cannot resolve <host>`, `TLS error:
...`. Redirects are not followed (a 3xx is unhealthy) and no proxy is used.

Events are `core.alerts.AlertEvent`s like the evaluator's: kind `unhealthy`, pilot `system`,
device the rule's component, no sensor, `level` the rule's `pending_s`, `value`, `latest` and
`peak` the seconds unhealthy (when it fired; when it ended), `direction` above, never late.
`start_ns` is when the component was first seen unhealthy, `end_ns` (cleared) when it was
first seen healthy again, `at_ns` the check that decided the event. The label is
`unhealthy: <reason> (<url>)` (`core.alerts.rules.health_label`): the reason seen when the
episode began, and the URL, which the notification's words need. `alarm_id` is
`alarm_id(rule, component, start_ns)`, as the evaluator's.

State is kept in memory only. A restart keeps the alarms open in the store: `adopt` takes
them back (by rule id and URL), so an alarm still unhealthy is not fired twice, and one healthy
again clears after `clear_s`. A pending run (unhealthy, not yet fired) starts again after a
restart. On a reload, the state of rules whose id and URL stay carries over (with the new
pending_s, clear_s, severity...); a removed rule's open alarm is dropped without a `cleared`
(as the evaluator does with a removed rule's).

Bounds: one request per rule per round, rounds never overlap (a slow round delays the next),
`workers` threads ask in parallel (4), each request waits at most the rule's `timeout_s` and
reads at most `BODY_LIMIT` bytes; the events wait in memory until drained.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import orjson
import urllib3
from urllib3.exceptions import (
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as HTTPTimeoutError

from alerts.store import Alarm
from core.alerts.evaluate import AlertEvent, EventType, alarm_id
from core.alerts.rules import SYSTEM_PILOT, UNHEALTHY, Rule, health_label, parse_health_label
from core.timeutil import NS_PER_S

log = logging.getLogger(__name__)

#: A request's answer is read up to this many bytes (the reason in an ingest or API body).
BODY_LIMIT = 512
#: The longest reason kept in a label.
REASON_LIMIT = 160
DEFAULT_EVERY_S = 15.0
#: Threads that ask the endpoints in parallel.
WORKERS = 4
USER_AGENT = "pilot-telemetry-alerts/1 (health)"
#: A round is given up this often when asked to stop (in seconds).
_STOP_POLL_S = 0.2

#: What asks a rule's endpoint: None when healthy, else why not.
Fetch = Callable[[Rule], str | None]


def health_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """The rules of kind `unhealthy`, in their order."""
    return tuple(r for r in rules if r.kind == UNHEALTHY)


# --- asking an endpoint ---------------------------------------------------------------------


class HttpFetch:
    """GET a rule's URL with urllib3: None for a 2xx answer, else the reason (thread-safe)."""

    def __init__(self, *, body_limit: int = BODY_LIMIT) -> None:
        self.body_limit = body_limit
        self._pools = urllib3.PoolManager(num_pools=64, maxsize=1, block=False, retries=False)

    def close(self) -> None:
        """Close the connections kept."""
        self._pools.clear()

    def __call__(self, rule: Rule) -> str | None:
        """None when `rule.url` answers 2xx within `rule.timeout_s`, else why not."""
        assert rule.url is not None, "an unhealthy rule has a URL"
        extra = {"ca_certs": rule.ca_file} if rule.ca_file else None
        target = urllib3.util.parse_url(rule.url)
        try:
            pool = self._pools.connection_from_url(rule.url, pool_kwargs=extra)
            response = pool.urlopen(
                "GET",
                target.request_uri,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(total=rule.timeout_s),
                preload_content=False,
            )
        except (HTTPError, OSError) as exc:
            return failure(exc, rule)
        try:
            if 200 <= response.status < 300:
                return None
            try:
                body = response.read(self.body_limit)
            except (HTTPError, OSError):
                body = b""
            return status_reason(response.status, body)
        finally:
            response.close()
            response.release_conn()


def failure(exc: BaseException, rule: Rule) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(exc, NameResolutionError):
        reason = f"cannot resolve {urllib3.util.parse_url(rule.url or '').host or 'the host'}"
    elif isinstance(exc, NewConnectionError):  # before timeouts: it is one, for urllib3
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(exc).lower():
            reason = "connection refused"
        elif isinstance(cause, OSError) and cause.strerror:
            reason = f"cannot connect: {cause.strerror}"
        else:
            reason = f"cannot connect: {exc}"
    elif isinstance(exc, HTTPTimeoutError | TimeoutError):
        reason = f"no answer within {rule.timeout_s:g} s"
    elif isinstance(exc, SSLError):
        reason = f"TLS error: {exc}"
    elif isinstance(exc, ProtocolError):
        reason = f"connection broken: {exc}"
    else:
        reason = f"request failed: {exc}"
    return clip(reason)


_PROBLEMS = re.compile(rb'"problems"\s*:\s*(\[[^\]]*\])')


def status_reason(status: int, body: bytes) -> str:
    """`HTTP 503`, with what the body says when it is ingest's or the API's health JSON.

    Ingest's `{"status": "unhealthy", "problems": [...]}` gives its problems (found even in a
    body cut at `BODY_LIMIT`), the API's `{"status": "unavailable"}` its status.
    """
    detail = ""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        found = _PROBLEMS.search(body)
        parsed = {"problems": _json_or_none(found.group(1))} if found else None
    if isinstance(parsed, dict):
        problems = parsed.get("problems")
        if isinstance(problems, list) and problems:
            detail = "; ".join(str(p) for p in problems)
        elif isinstance(parsed.get("status"), str):
            detail = parsed["status"]
    return clip(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")


def _json_or_none(data: bytes) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def clip(reason: str) -> str:
    """One line of printable text, at most `REASON_LIMIT` characters."""
    line = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    return (
        line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "\N{HORIZONTAL ELLIPSIS}"
    )


# --- the watch ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Open:
    """An open alarm: its id, the component it names, its start and label."""

    alarm_id: str
    component: str
    start_ns: int
    label: str


@dataclass(slots=True)
class _Watch:
    """One rule's state: its unhealthy run (no alarm yet), or its open alarm and healthy run."""

    rule: Rule
    since_ns: int | None = None  # first seen unhealthy, while no alarm is open
    reason: str = ""  # why, then
    open: _Open | None = None
    healthy_since_ns: int | None = None  # first seen healthy again, while an alarm is open


class HealthWatch:
    """Polls the `unhealthy` rules' endpoints and makes their alarms' events (see the module).

    `fetch` asks one rule's endpoint (default `HttpFetch`): None when healthy, else the
    reason. `clock` gives the times of checks and events (ns since the epoch). `poll()` is one
    round, run by the thread every `every_s` after `start()`, or called directly (tests).
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], int] = time.time_ns,
        every_s: float = DEFAULT_EVERY_S,
        fetch: Fetch | None = None,
        workers: int = WORKERS,
    ) -> None:
        if not every_s > 0:
            raise ValueError("every_s must be positive")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.clock = clock
        self.every_s = every_s
        self.workers = workers
        http = None
        if fetch is None:
            http = fetch = HttpFetch()
        self._http = http
        self._fetch = fetch
        self._lock = threading.Lock()
        self._watches = {r.id: _Watch(r) for r in health_rules(rules)}
        self._events: list[AlertEvent] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        #: Rounds completed and endpoint requests made, since construction.
        self.rounds = 0
        self.requests = 0

    # --- the service's side -----------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules watched."""
        with self._lock:
            return tuple(w.rule for w in self._watches.values())

    def start(self) -> HealthWatch:
        """Start the thread (its first round at once); a watch starts once."""
        if self._thread is not None:
            raise RuntimeError("a HealthWatch starts once")
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="alerts-health-get")
        self._thread = threading.Thread(target=self._run, name="alerts-health", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread; requests in flight are abandoned (their results unused)."""
        self._stopping.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.close()

    def drain(self) -> list[AlertEvent]:
        """The events made since the last drain, in the order they were made."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def adopt(self, active: Iterable[Alarm]) -> int:
        """Take back the alarms of kind `unhealthy` still open in the store; how many.

        An alarm is its rule's when the rule id is the same and so is the URL its label shows.
        It then clears once the endpoint has been healthy for `clear_s`, and is not fired
        again while it is unhealthy. Call before `start()`; a rule that has an open alarm
        already keeps it.
        """
        adopted = 0
        with self._lock:
            for alarm in sorted(active, key=lambda a: a.start_ns, reverse=True):  # newest first
                watch = self._watches.get(alarm.rule)
                if alarm.kind != UNHEALTHY or not alarm.active or watch is None:
                    continue
                if watch.open is not None:
                    continue
                _, url = parse_health_label(alarm.label)
                if url is None and alarm.device != watch.rule.component:
                    continue
                if url is not None and url != watch.rule.url:
                    continue
                watch.open = _Open(alarm.id, alarm.device, alarm.start_ns, alarm.label)
                watch.since_ns, watch.reason, watch.healthy_since_ns = None, "", None
                adopted += 1
        return adopted

    def replace_rules(self, rules: Iterable[Rule]) -> None:
        """Watch these rules' endpoints now; a rule whose id and URL stay keeps its state."""
        fresh = health_rules(rules)
        with self._lock:
            old, self._watches = self._watches, {}
            for rule in fresh:
                watch = old.get(rule.id)
                if watch is not None and watch.rule.url == rule.url:
                    watch.rule = rule
                else:
                    watch = _Watch(rule)
                self._watches[rule.id] = watch

    def open_alarms(self) -> dict[str, str]:
        """Rule id -> the id of its open alarm."""
        with self._lock:
            return {k: w.open.alarm_id for k, w in self._watches.items() if w.open is not None}

    # --- a round ----------------------------------------------------------------------------

    def poll(self) -> None:
        """Ask every endpoint once and judge the answers (in rule order)."""
        rules = self.rules
        results = self._ask(rules)
        if results is None:  # stopping
            return
        with self._lock:
            for rule, at_ns, reason in results:
                watch = self._watches.get(rule.id)
                if watch is None or watch.rule.url != rule.url:
                    continue  # removed or replaced during the round
                self._judge(watch, at_ns, reason)
            self.rounds += 1
            self.requests += len(results)

    def _ask(self, rules: Sequence[Rule]) -> list[tuple[Rule, int, str | None]] | None:
        pool = self._pool
        if pool is None or len(rules) <= 1:
            return [self._probe(r) for r in rules]
        futures: list[Future[tuple[Rule, int, str | None]]] = []
        try:
            futures = [pool.submit(self._probe, r) for r in rules]
        except RuntimeError:  # the pool was shut down: stopping
            return None
        waiting = set(futures)
        while waiting:
            _, waiting = wait(waiting, timeout=_STOP_POLL_S)
            if self._stopping.is_set():
                for future in waiting:
                    future.cancel()
                return None
        return [f.result() for f in futures]

    def _probe(self, rule: Rule) -> tuple[Rule, int, str | None]:
        at_ns = int(self.clock())
        try:
            reason = self._fetch(rule)
        except Exception as exc:  # a bug in a fetch: the endpoint is not known healthy
            log.exception("health check of %s (%s) failed", rule.id, rule.url)
            reason = f"check failed: {type(exc).__name__}"
        return rule, at_ns, reason

    def _judge(self, watch: _Watch, at_ns: int, reason: str | None) -> None:
        rule = watch.rule
        if reason is None:  # healthy
            watch.since_ns, watch.reason = None, ""
            if watch.open is None:
                return
            if watch.healthy_since_ns is None:
                watch.healthy_since_ns = at_ns
            if at_ns - watch.healthy_since_ns >= rule.clear_s * NS_PER_S:
                end_ns = watch.healthy_since_ns
                self._emit("cleared", rule, watch.open, end_ns=end_ns, at_ns=at_ns)
                watch.open, watch.healthy_since_ns = None, None
            return
        watch.healthy_since_ns = None
        if watch.open is not None:
            return
        if watch.since_ns is None:
            watch.since_ns, watch.reason = at_ns, reason
        if at_ns - watch.since_ns >= rule.pending_s * NS_PER_S:
            assert rule.component is not None and rule.url is not None
            start_ns = watch.since_ns
            watch.open = _Open(
                alarm_id(rule.id, rule.component, start_ns),
                rule.component,
                start_ns,
                health_label(watch.reason, rule.url),
            )
            watch.since_ns, watch.reason = None, ""
            self._emit("fired", rule, watch.open, end_ns=None, at_ns=at_ns)

    def _emit(
        self, kind: EventType, rule: Rule, alarm: _Open, *, end_ns: int | None, at_ns: int
    ) -> None:
        seconds = ((at_ns if end_ns is None else end_ns) - alarm.start_ns) / NS_PER_S
        event = AlertEvent(
            id=f"{alarm.alarm_id}:{kind}",
            alarm_id=alarm.alarm_id,
            type=kind,
            rule=rule.id,
            kind="unhealthy",
            pilot=SYSTEM_PILOT,
            device=alarm.component,
            sensor=None,
            severity=rule.severity,
            label=alarm.label,
            level=float(rule.pending_s),
            direction="above",
            start_ns=alarm.start_ns,
            end_ns=end_ns,
            at_ns=at_ns,
            value=seconds,
            latest=seconds,
            peak=seconds,
            late=False,
        )
        self._events.append(event)
        log.info(
            "%s %s: %s", alarm.component, "unhealthy" if kind == "fired" else "healthy", alarm.label
        )

    # --- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception:  # a bug: say so, try again next round
                log.exception("health round failed")
            next_at += self.every_s
            now = time.monotonic()
            next_at = max(next_at, now)  # a slow round: the next at once, no catching up
            if self._stopping.wait(next_at - now):
                break

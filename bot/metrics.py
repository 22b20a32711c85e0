"""Prometheus metrics (prometheus_client): every definition, and the one-line hooks the code calls.

prometheus_client rather than hand-written exposition: it owns the text format, and its multiprocess
mode adds up what each uvicorn worker counted. With PROMETHEUS_MULTIPROC_DIR set (`python -m bot
serve` sets it for WEB_CONCURRENCY > 1, bot/ops/probes.py) every worker writes its values to files there
and a scrape, answered by any worker, reads them all. It must be in the environment before
prometheus_client is imported, so worker processes inherit it.

Every label value comes from a closed set: verbs, actions, lanes, job names, status codes, and
Cloudflare paths with every identifier replaced by a placeholder (`endpoint`). Nothing a person
typed, no email, Slack ID, seat UID or account ID ever becomes a label, so a scrape may be kept
anywhere. What is read from Redis at scrape time (rate budget, directory, job queue) is in
bot/ops/probes.py.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

COMMANDS = Counter("seatbot_commands", "Slash commands answered, by verb and result", ["verb", "result"])
CLICKS = Counter("seatbot_clicks", "Button clicks handled, by action and result", ["action", "result"])
CLOUDFLARE_REQUESTS = Counter(
    "seatbot_cloudflare_requests",
    "Cloudflare API requests (each attempt), by method, templated endpoint and HTTP status",
    ["method", "endpoint", "status"],
)
CLOUDFLARE_SECONDS = Histogram(
    "seatbot_cloudflare_request_duration_seconds",
    "Time for one Cloudflare API attempt, by method and templated endpoint",
    ["method", "endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)
SEATS_CHANGED = Counter(
    "seatbot_seats_changed",
    "Seats Cloudflare confirmed removed (access and gateway off) in a PATCH's answer, by budget lane",
    ["lane"],
)
BUDGET_TAKEN = Counter(
    "seatbot_rate_budget_taken", "Slots taken in the shared Cloudflare rate budget, by lane", ["lane"]
)
JOBS = Counter("seatbot_jobs", "Background jobs run by this process, by job and result", ["job", "result"])
JOB_LAG = Histogram(
    "seatbot_job_lag_seconds",
    "From a job's due time to the moment a job runner started it",
    ["job"],
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)
SLACK_DELIVERY_FAILURES = Counter(
    "seatbot_slack_delivery_failures",
    "Messages Slack did not take, by route (response_url or the Web API)",
    ["via"],
)

SLACK_ACKS = Histogram(
    "seatbot_slack_ack_seconds",
    "HTTP: from a Slack request's arrival to its answer on the wire (Slack gives up at 3 s), by status",
    ["status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
)
STARTS = Counter(
    "seatbot_process_starts",
    "Processes (each uvicorn worker, Socket Mode, jobs) that started serving, by role: a restart loop shows",
    ["role"],
)

VERBS = frozenset({"help", "revoke", "status", "audit", "idle", "sync", "scheduled"})
CLICK_ACTIONS = frozenset(
    {"confirm", "cancel", "unschedule", "idle_review", "step_confirm", "step_cancel", "home_unschedule"}
)
# What each answer type counts as (by class name: this module imports nothing of the bot's)
_RESULTS = {
    "Card": "card",
    "Help": "info",  # /seat help answers a card, as it once answered an info notice
    "StatusReport": "ok",
    "AuditReport": "ok",
    "IdleReport": "ok",
    "ScheduleList": "ok",
    "Failure": "failed",
    "Cancelled": "cancelled",
    "ScheduleConfirmed": "scheduled",
    "Unscheduled": "unscheduled",
}
NOTICE_KINDS = frozenset({"info", "error", "refused", "unavailable", "expired"})
# The words of Cloudflare's paths the bot calls; any other segment is an identifier
_PATH_WORDS = frozenset({"accounts", "access", "seats", "users", "client", "v4"})
_ID_AFTER = {"accounts": "{account_id}", "users": "{user_id}"}


def verb_of(text: str) -> str:
    """The command's verb as parse() reads it, or `unknown` / `none`: never what was typed."""
    words = text.strip().split(None, 1)
    if not words:
        return "none"
    verb = words[0].lower()
    if verb in ("-h", "--help"):
        return "help"
    return verb if verb in VERBS else "unknown"


def result_of(reply: object) -> str:
    """A closed-set word for what the flow answered (a Notice by its kind)."""
    if isinstance(reply, str):  # the listener's own outcome: error, deadline
        return reply
    name = type(reply).__name__
    if name == "Notice":
        kind = str(getattr(reply, "kind", "info"))
        return kind if kind in NOTICE_KINDS else "info"
    if name in ("Outcome", "Fired"):
        results = getattr(reply, "results", ())
        return "done" if all(getattr(r, "confirmed", False) for r in results) else "partial"
    if name == "SweepOutcome":
        return "failed" if getattr(reply, "failed", ()) and not getattr(reply, "freed", ()) else "done"
    return _RESULTS.get(name, "other")


def command(text: str, reply: object) -> None:
    """One `/seat` command answered (`reply`: the flow's answer, or `error` / `deadline`)."""
    COMMANDS.labels(verb_of(text), result_of(reply)).inc()


def click(action: str, reply: object) -> None:
    """One button click handled."""
    CLICKS.labels(action if action in CLICK_ACTIONS else "other", result_of(reply)).inc()


def endpoint(path: str) -> str:
    """`accounts/0123…/access/users?email=…` → `/accounts/{account_id}/access/users`."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    out: list[str] = []
    for index, part in enumerate(parts):
        before = parts[index - 1] if index else ""
        if before in _ID_AFTER:
            out.append(_ID_AFTER[before])
        else:
            out.append(part if part in _PATH_WORDS else "{id}")
    return "/" + "/".join(out)


def cloudflare_request(method: str, path: str, status: int | None, seconds: float) -> None:
    """One attempt at a Cloudflare call; `status` None when no answer came (timeout, connection)."""
    where = endpoint(path)
    method = method.upper() if re.fullmatch(r"[A-Za-z]{3,7}", method) else "OTHER"
    CLOUDFLARE_REQUESTS.labels(method, where, str(status) if status is not None else "none").inc()
    CLOUDFLARE_SECONDS.labels(method, where).observe(seconds)


def seats_changed(seats: object, lane: str) -> None:
    """A PATCH answer: count the seats it shows removed."""
    removed = sum(1 for seat in seats if getattr(seat, "removed", False)) if isinstance(seats, list) else 0
    if removed:
        SEATS_CHANGED.labels(lane).inc(removed)


def job(name: str, *, lag: float | None = None, failed: bool | None = None) -> None:
    """A job started (`lag`: seconds past its due time) or ended (`failed`)."""
    if lag is not None:
        JOB_LAG.labels(name).observe(max(0.0, lag))
    if failed is not None:
        JOBS.labels(name, "failed" if failed else "ok").inc()


def slack_ack(status: int, seconds: float) -> None:
    SLACK_ACKS.labels(str(status)).observe(seconds)


def delivered(via: str, ok: bool) -> bool:
    """Passes `ok` (Slack took the message) through, counting a failure."""
    if not ok:
        SLACK_DELIVERY_FAILURES.labels(via).inc()
    return ok

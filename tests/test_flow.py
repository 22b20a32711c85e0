"""SeatFlow on its seams, without Slack or HTTP servers: real Redis, the sandbox through httpx."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import pytest
import redis.asyncio as aredis

from bot.app.flow import EXPIRED, SeatFlow
from bot.cloudflare.budget import Lane
from bot.devtools.sandbox import Sandbox
from bot.domain.models import AccessUser, Pending, Seat, SeatUpdate
from bot.domain.outcomes import Cancelled, Card, Failure, Notice, Outcome
from bot.domain.policy import Policy
from bot.executor import Executor
from bot.state.pending import CLAIMED, PREFIX
from tests.support.flow import audit_events, seat_flow
from tests.support.harness import ADMIN, ADMIN2, ALICE, OUTSIDER

BOB = "bob@example.com"
CHANNEL = "C0OPS"


def seat_of(sandbox: Sandbox, email: str) -> str:
    (uid,) = [uid for uid, user in sandbox.users.items() if user["email"] == email]
    return uid


async def card(flow: SeatFlow, text: str, *, user: str = ADMIN) -> Pending:
    reply = await flow.command(user=user, channel=CHANNEL, text=text)
    assert isinstance(reply, Card), reply
    return reply.pending


async def confirm(flow: SeatFlow, pending: Pending, *, user: str = ADMIN) -> Any:
    return await flow.click(action="confirm", pending_id=pending.id, user=user)


async def test_command_gives_a_card_stored_with_its_ttl_and_calls_no_patch(
    sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """revoke → a card for exactly the named seat, kept in Redis for confirm_ttl, audited; nothing changed."""
    async with seat_flow(
        sandbox, redis_client, policy=Policy(admins=frozenset({ADMIN}), confirm_ttl=90)
    ) as flow:
        reply = await flow.command(user=ADMIN, channel=CHANNEL, text=f"revoke {ALICE} --reason leaver")
    assert isinstance(reply, Card)
    pending = reply.pending
    assert [t.seat_uid for t in pending.targets] == [seat_of(sandbox, ALICE)]
    assert (pending.requester, pending.channel, pending.reason) == (ADMIN, CHANNEL, "leaver")
    assert 0 < await redis_client.ttl(PREFIX + pending.id) <= 90
    (event,) = await audit_events(redis_client)
    assert (event["event"], event["id"]) == ("requested", pending.id)
    assert sandbox.patches == []


async def test_a_claimed_record_is_gone_and_leaves_a_marker_with_a_ttl(
    sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """Confirming deletes the pending record and leaves a short-lived claim marker in its place."""
    async with seat_flow(sandbox, redis_client) as flow:
        pending = await card(flow, f"revoke {ALICE}")
        assert await redis_client.exists(PREFIX + pending.id) == 1
        assert isinstance(await confirm(flow, pending), Outcome)
    assert await redis_client.exists(PREFIX + pending.id) == 0
    assert 0 < await redis_client.ttl(CLAIMED + pending.id) <= 90 + 300  # the lease, then 5 minutes


async def test_concurrent_clicks_claim_once(sandbox: Sandbox, redis_client: aredis.Redis) -> None:
    """Ten confirms at once: one outcome and one PATCH; the others hear the first is being handled."""
    async with seat_flow(sandbox, redis_client) as flow:
        pending = await card(flow, f"revoke {ALICE}")
        replies = await asyncio.gather(*(confirm(flow, pending) for _ in range(10)))
        late = await confirm(flow, pending)
    (outcome,) = [r for r in replies if isinstance(r, Outcome)]
    assert outcome.all_confirmed
    others = [r.text for r in replies if isinstance(r, Notice)]  # before or after the first finished
    assert len(others) == 9 and all("still being handled" in t or t == EXPIRED for t in others)
    assert isinstance(late, Notice) and late.text == EXPIRED
    assert len(sandbox.patches) == 1
    assert sandbox.users[seat_of(sandbox, ALICE)]["access_seat"] is False


async def test_two_person_rule_needs_another_admin(sandbox: Sandbox, redis_client: aredis.Redis) -> None:
    """The requester's own confirm is refused and leaves the card usable; a second admin's goes through."""
    policy = Policy(admins=frozenset({ADMIN, ADMIN2}), two_person=True)
    async with seat_flow(sandbox, redis_client, policy=policy) as flow:
        pending = await card(flow, f"revoke {ALICE}")
        own = await confirm(flow, pending, user=ADMIN)
        outsider = await confirm(flow, pending, user=OUTSIDER)
        assert sandbox.patches == [] and await redis_client.exists(PREFIX + pending.id) == 1
        second = await confirm(flow, pending, user=ADMIN2)
    assert isinstance(own, Notice) and own.kind == "refused" and "Two-person rule" in own.text
    assert isinstance(outsider, Notice) and outsider.text.startswith(
        "Only seat-bot admins may confirm a revoke."
    )
    assert isinstance(second, Outcome) and second.confirmer == ADMIN2 and second.all_confirmed
    refusals = [e["why"] for e in await audit_events(redis_client) if e["event"] == "refused"]
    assert refusals == ["own_request", "not an admin"]


async def test_cancel_uses_up_the_card_and_calls_nothing(
    sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """Cancel by the requester: Cancelled, the record is gone, a later confirm is expired, no PATCH."""
    async with seat_flow(sandbox, redis_client) as flow:
        pending = await card(flow, f"revoke {ALICE}")
        other = await flow.click(action="cancel", pending_id=pending.id, user=ADMIN2)
        cancelled = await flow.click(action="cancel", pending_id=pending.id, user=ADMIN)
        after = await confirm(flow, pending)
    assert isinstance(other, Notice) and other.kind == "refused"
    assert isinstance(cancelled, Cancelled) and cancelled.by == ADMIN
    assert isinstance(after, Notice) and after.text == EXPIRED
    assert await redis_client.exists(PREFIX + pending.id) == 0
    assert sandbox.patches == []
    assert "cancelled" in [e["event"] for e in await audit_events(redis_client)]


async def test_failure_after_a_chunk_reports_it_and_retries_only_the_rest(
    sandbox: Sandbox, redis_client: aredis.Redis
) -> None:
    """Chunk 1 (alice) goes through, chunk 2 (bob) fails: alice is reported done, the retry is bob only."""
    alice, bob = seat_of(sandbox, ALICE), seat_of(sandbox, BOB)
    sandbox.inject(status=400, code=10001, message="bad seat", methods=("PATCH",), skip=1)
    async with seat_flow(sandbox, redis_client, chunk_size=1) as flow:
        pending = await card(flow, f"revoke {ALICE} {BOB}")
        failure = await confirm(flow, pending)
        assert isinstance(failure, Failure) and failure.retry is not None
        assert [r.target.seat_uid for r in failure.done] == [alice]
        assert [t.seat_uid for t in failure.retry.targets] == [bob]
        assert failure.retry.attempt == 2 and "bad seat" in failure.error
        retried = await confirm(flow, failure.retry)
    assert isinstance(retried, Outcome) and retried.all_confirmed
    assert [[seat["seat_uid"] for seat in p.body] for p in sandbox.patches] == [[alice], [bob], [bob]]
    events = await audit_events(redis_client)
    assert [e["seat_uid"] for e in events if e["event"] == "succeeded"] == [alice, bob]
    (retry_request,) = [e for e in events if e.get("retry_of")]
    assert retry_request["retry_of"] == pending.id and retry_request["seats"] == [bob]


class Exploding:
    """Look-ups work; the PATCH hits a bug."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def find_users(self, *, email: str) -> list[AccessUser]:
        return list(await self.inner.find_users(email=email))

    async def find_users_by_seat_uids(self, seat_uids: Collection[str]) -> dict[str, AccessUser]:
        return dict(await self.inner.find_users_by_seat_uids(seat_uids))

    async def update_seats(self, updates: Sequence[SeatUpdate], *, lane: Lane = "interactive") -> list[Seat]:
        raise KeyError("surprise")


async def test_an_unexpected_error_is_a_recorded_failure_not_a_success(
    sandbox: Sandbox, redis_client: aredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug during the PATCH: a Failure naming it, nothing reported done, audited, a fresh try offered."""
    async with seat_flow(sandbox, redis_client) as flow:
        flow.revocation.executor = Executor(Exploding(flow.seats))
        pending = await card(flow, f"revoke {ALICE}")
        failure = await confirm(flow, pending)
    assert isinstance(failure, Failure)
    assert "unexpected error (KeyError)" in failure.error and failure.done == ()
    assert failure.retry is not None and failure.retry.targets == pending.targets
    (failed,) = [e for e in await audit_events(redis_client) if e["event"] == "failed"]
    assert failed["id"] == pending.id and "KeyError" in failed["error"]
    assert "revoke failed unexpectedly" in caplog.text

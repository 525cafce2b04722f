"""The turn runner: one claimed turn, run on its agent, its outcome written (fenced).

Also what a turn sends its agent (``build_user_message``, protocol v1) and the typing
indicator shown while a slow agent thinks (``TypingStart``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chatbridge import clock, logs, tracing
from chatbridge.errors import AgentElsewhere, AgentTimeout, AgentUnavailable, TurnCancelled
from chatbridge.media.signing import SCHEME, sign_frame_media, stored_media_id
from chatbridge.pipeline.decisions import (
    AgentPick,
    TurnPlan,
    agent_handoff_event,
    pick_agent,
    plan_outcome,
)
from chatbridge.pipeline.host import log_failure
from chatbridge.retry import GiveUp, decide_retry
from chatbridge.store.outage import hold_on
from chatbridge.store.records import ClaimedTurn, CompletedTurn, Route
from chatbridge.transports.base import AgentOutcome, TurnRequest

if TYPE_CHECKING:
    from chatbridge.pipeline.host import Host

log = logging.getLogger("chatbridge.workers")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def turn_files(turn: ClaimedTurn) -> list[dict[str, Any]]:
    """The stored files of a turn's messages as ``user_message.files`` (protocol 1.3):
    ``{file_id, file_name, file_url, mime, size}``, ``file_url`` still ``media:<id>`` until
    ``sign_frame_media`` signs it. Files not (yet) stored are left out."""
    files = []
    for m in turn.messages:
        for a in m.attachments:
            media_id = stored_media_id(a)
            if media_id and a.get("status", "ready") == "ready":
                files.append(
                    {
                        "file_id": media_id,
                        "file_name": a.get("name") or media_id,
                        "file_url": SCHEME + media_id,
                        # FileRef requires both: an unknown type is plain bytes
                        "mime": a.get("mime") or "application/octet-stream",
                        "size": a.get("size") or 0,
                    }
                )
    return files


def build_user_message(turn: ClaimedTurn, deadline: float) -> dict[str, Any]:
    """The ``user_message`` frame of protocol v1 for a claimed turn."""
    msgs = turn.messages
    contact = turn.contact
    context = dict(msgs[-1].meta.get("context", {})) if msgs else {}
    files = turn_files(turn)
    return {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": turn.key,
        "seq": turn.id,
        "conversation_id": turn.conversation_id,
        "inbox_id": turn.conversation.inbox_id,
        "channel": turn.conversation.channel,
        "content": "\n".join(m.text for m in msgs),
        "messages": [
            {
                "id": m.id,
                "content": m.text,
                "created_at": iso(m.created_at),
                "attachments": m.attachments,
                # the option a customer picked from our choices (protocol 1.2)
                **(
                    {"metadata": {"interactive": m.meta["interactive"]}}
                    if isinstance(m.meta.get("interactive"), dict)
                    else {}
                ),
            }
            for m in msgs
        ],
        **({"files": files} if files else {}),
        "sender": (
            {
                "id": contact.external_id,
                "name": contact.name,
                "email": contact.email,
                "phone": contact.phone,
            }
            if contact
            else None
        ),
        "context": context,
        "response_mode": turn.response_mode,
        "fresh": turn.fresh,
        "deadline": iso(deadline),
        "timestamp": iso(clock.now()),
    }


class TypingStart:
    """A turn's typing indicator, shown only if its agent is still thinking after ``delay``.

    A fast agent's reply goes out alone: no ``typing_on`` row, no pair of channel calls
    around a reply the customer sees at once. A slow one's ``typing_on`` is written (fenced
    by the turn's lease) while it thinks, so it goes out before the reply and its
    ``typing_off`` after.
    """

    def __init__(self, bridge: Host, turn: ClaimedTurn, delay: float) -> None:
        self._b = bridge
        self._turn = turn
        self._task: asyncio.Task[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        if delay <= 0:
            self._begin()
        else:
            self._timer = asyncio.get_running_loop().call_later(delay, self._begin)

    def _begin(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._write())

    async def _write(self) -> bool:
        b, turn = self._b, self._turn
        try:
            written: bool = await b.store.start_typing(
                turn.id, b.settings.instance_id, turn.conversation_id
            )
        except Exception as exc:  # a typing indicator is not worth a retry
            log.info("turn %s: typing indicator not written: %s", turn.key, exc)
            return False
        if written:
            b.wake_deliveries()
        return written

    async def settle(self) -> bool:
        """Stop waiting; True if a ``typing_on`` may exist (so its ``typing_off`` is due)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            return False
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            raise
        except Exception:
            return True


class TurnRunner:
    """Runs one claimed turn on its agent and writes the outcome (see ``Bridge``).

    While it runs, the bridge renews the turn's lease (``Bridge.held``). If the run fails in a
    way it cannot handle (a bug, the database away when the turn is handed back), the turn is
    given back with backoff, or — when even that cannot be written — its lease simply runs
    out and the turn is claimed again. Nothing is left leased to a task that no longer runs.
    """

    def __init__(self, bridge: Host) -> None:
        self.b = bridge

    async def run(self, turn: ClaimedTurn) -> None:
        # every record logged while the turn runs carries its ids (chatbridge.logs)
        ids = logs.bind(
            conversation_id=turn.conversation_id,
            turn_id=turn.key,
            agent_id=turn.agent_id,
            message_id=turn.messages[-1].id if turn.messages else None,
        )
        try:
            if tracing.ON:
                with tracing.turn(turn):
                    await self._run_held(turn)
            else:
                await self._run_held(turn)
        finally:
            logs.unbind(ids)

    async def _run_held(self, turn: ClaimedTurn) -> None:
        b = self.b
        try:  # held since its claim (``Bridge._claim_turns``)
            await self._run(turn)
        except Exception as exc:
            log_failure(f"turn {turn.key}", turn.conversation_id, exc)
            b.metrics.errors.labels("turn_failed").inc()
            s = b.settings
            decision = decide_retry(
                attempts=turn.attempts,
                max_attempts=s.delivery_max_attempts,
                kind="retryable",
                error="internal_error",
                now=clock.now(),
                base=s.retry_base_seconds,
                cap=s.retry_max_seconds,
            )
            if isinstance(decision, GiveUp):
                await self._give_up(turn, decision)
            else:
                await self._give_back(turn, decision.delay)
        finally:
            b.held.drop_turn(turn.id)

    async def _give_up(self, turn: ClaimedTurn, decision: GiveUp) -> None:
        """A turn that failed the same way attempt after attempt (say, an agent's answer the
        store refuses) ends by its route's failure rule, as an agent error would: the
        customer gets the fallback (or a human), and the conversation moves on."""
        b = self.b
        s = b.settings
        route = b.route_by_id(turn.route_id) or b.default_route(turn)
        plan = plan_outcome(
            None,
            route=route,
            default_fallback=s.fallback_text,
            max_attempts=s.delivery_max_attempts,
            failure="internal_error",
        )
        try:
            result = await self._complete(turn, plan, error=decision.reason)
        except Exception:
            log.warning("turn %s: could not be ended; its lease will run out", turn.key)
            return
        if result.ok:
            log.error(
                "turn %s gave up after %d attempts conversation=%s",
                turn.key,
                turn.attempts,
                turn.conversation_id,
            )
            b.metrics.turns.labels(turn.agent_id, plan.outcome).inc()
            b.wake_deliveries()
            b.resolve_waiters(turn.id, plan.outcome, plan.reply_text)

    async def _complete(
        self,
        turn: ClaimedTurn,
        plan: TurnPlan,
        *,
        meta: dict[str, Any] | None = None,
        error: str | None = None,
        typing: bool = True,
    ) -> CompletedTurn:
        """Write ``plan`` as the turn's outcome (fenced by our lease)."""
        if tracing.ON:  # its deliveries are sent in the turn's trace
            tracing.stamp_deliveries(plan.deliveries)
        return await self.b.store.complete_turn(
            turn.id,
            self.b.settings.instance_id,
            state=plan.state,
            outcome=plan.outcome,
            reply_text=plan.reply_text,
            reply_attachments=plan.attachments,
            reply_meta={**(meta or {}), **plan.reply_meta},
            deliveries=plan.deliveries,
            handoff=plan.handoff,
            summary=plan.summary,
            summary_messages=plan.summary_messages,
            error=error if error is not None else plan.error,
            typing=typing,
        )

    async def _give_back(self, turn: ClaimedTurn, delay: float) -> None:
        s = self.b.settings
        try:
            await self.b.store.release_turn(turn.id, s.instance_id, delay=delay, count_attempt=True)
        except Exception:
            log.warning("turn %s: could not be given back; its lease will run out", turn.key)
            return
        self.b.schedule_wake(delay, what="turns")

    async def _run(self, turn: ClaimedTurn) -> None:
        b = self.b
        s = b.settings
        route: Route | None = b.route_by_id(turn.route_id) or b.route_for(
            turn.conversation.channel, turn.conversation.inbox_id
        )
        # which of the route's agents: a route with one agent costs nothing here
        pick = (
            pick_agent(route, turn.conversation, turn.messages, fresh=turn.fresh)
            if route
            else AgentPick(turn.agent_id)
        )
        agent_id = pick.agent_id
        outcome: AgentOutcome | None = None
        failure: str | None = None
        typed = False  # whether this attempt wrote a typing_on
        started = clock.now()
        if route is None:
            failure = "route_deleted"
        else:
            if pick.switch and not await self._make_current(turn, agent_id):
                return
            breaker = b.breaker(agent_id)
            deadline = started + route.timeout_seconds
            if not breaker.allow(started):
                failure = "circuit_open"
            else:
                frame = build_user_message(turn, deadline)
                if pick.role is not None:  # who is addressed, on a route with several agents
                    frame["agent"], frame["role"] = agent_id, pick.role
                request = TurnRequest(
                    turn_key=turn.key,
                    seq=turn.id,
                    agent_id=agent_id,
                    conversation_id=turn.conversation_id,
                    # stored media get short-lived signed URLs (media.signing)
                    frame=sign_frame_media(frame, s),
                    deadline=deadline,
                )
                typing = (
                    TypingStart(b, turn, s.typing_delay_seconds) if b.shows_typing(turn) else None
                )
                try:
                    if tracing.ON:
                        with tracing.agent_call(request) as span:
                            outcome = await b.hub.run_turn(request)
                            tracing.outcome(span, outcome.kind, outcome.error_code)
                    else:
                        outcome = await b.hub.run_turn(request)
                except AgentElsewhere as exc:
                    await b.hand_back(turn, exc.replica)
                    return
                except TurnCancelled:
                    # superseded by a newer message: the ingest that did it took the lease,
                    # closed the typing and queued the turn that replaces this one
                    log.info("turn %s superseded conversation=%s", turn.key, turn.conversation_id)
                    return
                except (AgentUnavailable, AgentTimeout) as exc:
                    failure = exc.kind
                finally:
                    if typing is not None:
                        typed = await typing.settle()
                if outcome is not None and outcome.kind != "error":
                    breaker.record_success()
                    b.metrics.turn_seconds.labels(agent_id).observe(clock.now() - started)
                else:
                    breaker.record_failure(clock.now())
        if failure or (outcome is not None and outcome.kind == "error"):
            kind = failure or f"error:{outcome.error_code if outcome else ''}"
            b.metrics.agent_errors.labels(agent_id, kind.split(":")[0]).inc()
            log.warning(
                "turn %s failed (%s) conversation=%s agent=%s",
                turn.key,
                kind,
                turn.conversation_id,
                agent_id,
            )
        plan = plan_outcome(
            outcome,
            route=route or b.default_route(turn),
            default_fallback=s.fallback_text,
            max_attempts=s.delivery_max_attempts,
            failure=failure,
        )
        if outcome is not None and outcome.kind == "agent_handoff" and plan.to_agent is None:
            b.metrics.agent_errors.labels(agent_id, "agent_handoff_unknown").inc()
            log.warning(
                "turn %s failed (%s) conversation=%s agent=%s",
                turn.key,
                plan.error,
                turn.conversation_id,
                agent_id,
            )
        meta = dict(outcome.metadata) if outcome else {}
        if outcome is not None and plan.state == "done":
            # which agent answered (the agent's own metadata cannot claim another)
            meta["agent_id"] = agent_id
            if pick.role is not None:
                meta["agent_role"] = pick.role
        if plan.to_agent is not None and not await self._make_current(turn, plan.to_agent.agent_id):
            return

        async def complete() -> CompletedTurn:
            return await self._complete(
                turn,
                plan,
                meta=meta,
                # an earlier attempt may have shown typing too
                typing=typed or turn.attempts > 1,
            )

        # The agent's answer is in hand: keep it through a database outage.
        result = await hold_on(
            complete,
            what=f"turn {turn.key}: writing its outcome",
            give_up_after=s.store_retry_seconds,
        )
        if not result.ok:
            log.warning("turn %s: lease lost before completion; result dropped", turn.key)
            b.metrics.errors.labels("lease_lost").inc()
            return
        b.metrics.turns.labels(agent_id, plan.outcome).inc()
        b.wake_deliveries()
        b.resolve_waiters(turn.id, plan.outcome, plan.reply_text)
        if plan.handoff:
            await b.notify_agent_owner(agent_id, turn.conversation_id, "human", "handoff")
        if plan.to_agent is not None and outcome is not None:
            log.info(
                "turn %s: agent %s handed the conversation to %s conversation=%s",
                turn.key,
                agent_id,
                plan.to_agent.agent_id,
                turn.conversation_id,
            )
            await b.hub.send_event(
                plan.to_agent.agent_id,
                agent_handoff_event(
                    turn.conversation,
                    from_agent=agent_id,
                    from_role=pick.role,
                    to=plan.to_agent,
                    reason=outcome.reason,
                ),
            )

    async def _make_current(self, turn: ClaimedTurn, agent_id: str) -> bool:
        """Make ``agent_id`` the conversation's current agent (fenced by the turn's lease),
        before the turn's outcome is written: the next turn may be claimed the moment that
        commits, and must run on it. False (logged): the lease is lost, drop the turn."""
        b = self.b

        async def write() -> bool:
            return await b.store.set_current_agent(
                turn.conversation_id, agent_id, turn_id=turn.id, owner=b.settings.instance_id
            )

        if await hold_on(
            write,
            what=f"turn {turn.key}: switching its conversation's agent",
            give_up_after=b.settings.store_retry_seconds,
        ):
            return True
        log.warning("turn %s: lease lost before switching agent; turn dropped", turn.key)
        b.metrics.errors.labels("lease_lost").inc()
        return False

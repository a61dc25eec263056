"""The bot worker: runs bots on the deliveries of the outbox (``BotDelivery``), one lane each.

A *lane* is one bot participant (one bot in one room). Its deliveries run one at a time in
``id`` order; lanes run side by side on the event loop (synchronous bot code in threads). A
lane is guarded by a lease in the database (``BotLane``), so with several worker processes
each participant is served by one of them at a time and its order holds.

Where it runs:

* embedded (default without ``REDIS_URL``): inside the daphne process, started on its loop by
  ``embedded_application`` the first time the ASGI app is called (once per process);
* ``python manage.py botworker`` (with Redis; several may run) or ``python manage.py runworker
  bots`` (``BotChannelConsumer``).

Wake-ups arrive as ``bot.wake`` on the ``bots`` channel, or directly from the same process;
raw ``bot.message``/``bot.status`` payloads sent to the channel are recorded first. A sweep every
``CHAT_BOT_SWEEP_INTERVAL`` seconds picks up whatever a lost wake-up or a dead worker left.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import socket
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import orjson
from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from chatroom.postgresql import loop as on_loop
from conversations.chat import sends_without_savepoints
from conversations.errors import ChatError
from conversations.events import BOT_CHANNEL
from conversations.models import Participant
from conversations.rows import json_to_db

from . import ahead, conf, delivery, lanes, outbox, registry
from .base import Bot, BotMessage, BotStatus
from .context import Context
from .models import BotDelivery
from .replies import ReplyError, coerce
from .transports import RetryLater

logger = logging.getLogger(__name__)

MAX_INSTANCES = 10_000  # cached bot objects per worker (least recently used dropped)
MAX_KEPT = 1_000  # Contexts kept from bots' last turns (claims, bots/ahead.py), least recent dropped
LEASE_MARGIN = 30.0  # seconds a lease outlives the bot timeout

_workers: set[BotWorker] = set()


def local_workers() -> list[BotWorker]:
    """Workers running in this process (wake-ups reach them without the channel layer)."""
    return [w for w in _workers if w.running]


def db(func: Callable, *args: Any, **kwargs: Any):
    """Run ORM code in a thread; lanes must not queue behind one another's database work."""
    return database_sync_to_async(func, thread_sensitive=False)(*args, **kwargs)


def _run_sync_bot(func: Callable, *args: Any) -> Any:
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


class BotWorker:
    def __init__(self, *, listen: bool = True, layer: Any = None, owner: str | None = None) -> None:
        self.listen = listen
        self.layer = layer
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lanes: dict[str, asyncio.Task] = {}
        self.again: set[str] = set()
        self.instances: OrderedDict[tuple[str, str], tuple[str, Bot]] = OrderedDict()
        self.kept: OrderedDict[str, ahead.Kept] = OrderedDict()  # by participant id
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task] = []
        self.running = False
        self.completed = 0  # deliveries finished; waiters watch it change
        self._changed: asyncio.Condition | None = None
        self._executor = ThreadPoolExecutor(max_workers=conf.threads(), thread_name_prefix="bot")

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> BotWorker:
        self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        self.running = True
        _workers.add(self)
        if self.listen:
            self.tasks.append(asyncio.create_task(self._listen(), name="bots-listen"))
        self.tasks.append(asyncio.create_task(self._sweep_forever(), name="bots-sweep"))
        logger.info("bot worker %s started", self.owner)
        return self

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking work and let running lanes finish their delivery (at most ``grace``
        seconds, default the bot timeout); lanes still running then are cancelled, and their
        deliveries run again elsewhere once their lease expires."""
        self.running = False
        _workers.discard(self)
        for task in self.tasks:
            task.cancel()
        running = list(self.lanes.values())
        if running:
            await asyncio.wait(running, timeout=conf.timeout() + 1 if grace is None else grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*self.tasks, *running, return_exceptions=True)
        await asyncio.gather(*(_closing(bot) for _, bot in self.instances.values()), return_exceptions=True)
        self.tasks.clear()
        self.lanes.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("bot worker %s stopped", self.owner)

    # ---- wake-ups -----------------------------------------------------------------------------

    def wake(self, participant_id: str, delivery: dict[str, Any] | None = None) -> None:
        """Make sure a lane runs for this participant (call on the worker's loop). ``delivery``:
        the one the wake-up is for (``outbox.ahead_of``), which a lane starting now may run
        ahead of its claim (``bots.ahead``)."""
        if not self.running:
            return
        if participant_id in self.lanes:
            self.again.add(participant_id)  # the running lane looks again before it ends
            return
        # A context of its own: not the waker's (a database thread's wake-up carries asgiref's
        # marks of a thread-sensitive call, which would refuse the lane's own such calls).
        self.lanes[participant_id] = asyncio.create_task(
            self._lane(participant_id, delivery), name=f"lane-{participant_id}", context=contextvars.Context()
        )

    def wake_threadsafe(self, participant_id: str, delivery: dict[str, Any] | None = None) -> bool:
        loop = self.loop
        if not self.running or loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(self.wake, participant_id, delivery)
        return True

    async def handle(self, message: dict[str, Any]) -> None:
        """One channel-layer message: a wake-up, or a raw delivery to record first."""
        kind = message.get("type")
        if kind == "bot.wake":
            self.wake(str(message.get("participant_id")), message.get("delivery"))
        elif kind in ("bot.message", "bot.status"):
            await db(outbox.enqueue, message)  # wakes this process's workers itself
        else:
            logger.warning("bot worker ignored a %r message", kind)

    async def _listen(self) -> None:
        layer = self.layer or get_channel_layer()
        while True:
            try:
                message = await layer.receive(BOT_CHANNEL)
                await self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("bot worker: channel receive failed; retrying on the next sweep")
                await asyncio.sleep(conf.sweep_interval())

    async def sweep(self) -> None:
        for participant_id in await db(lanes.to_sweep):
            self.wake(participant_id)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("bot worker sweep failed")
            await asyncio.sleep(conf.sweep_interval())

    # ---- waiting (tests, the test kit) -------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], within: float = 20) -> None:
        """Return once ``predicate()`` (ORM code, run in a thread) holds; it is checked again
        after every finished delivery, never polled on a timer."""
        assert self._changed is not None, "start the worker first"
        async with asyncio.timeout(within):
            while True:
                seen = self.completed
                if await db(predicate):
                    return
                async with self._changed:
                    await self._changed.wait_for(lambda seen=seen: self.completed != seen)

    async def _notify(self) -> None:
        """A delivery finished: wake the waiters of every worker on this loop (whoever ran it)."""
        for worker in [w for w in _workers if w.loop is self.loop] or [self]:
            assert worker._changed is not None
            async with worker._changed:
                worker.completed += 1
                worker._changed.notify_all()

    # ---- lanes --------------------------------------------------------------------------------

    async def _lane(self, participant_id: str, wake: dict[str, Any] | None = None) -> None:
        """Run a participant's deliveries in order while this worker holds its lease.

        The lease's end is kept here: the lease is renewed only when less than a delivery's
        time is left, and one step (``_step``) takes or renews the lane, claims the next
        delivery and reads what it needs, or gives the idle lane up (bench/: the echo round
        trip). First, a pure bot may run the delivery of its wake-up ahead (``_ahead``)."""
        lease = conf.timeout() + LEASE_MARGIN
        until: datetime | None = None  # our lease's end while we hold the lane
        try:
            if wake is not None and self.running:
                until = await self._ahead(participant_id, wake, lease)
                if until is not None:
                    await self._notify()
            while self.running:
                self.again.discard(participant_id)
                until, item, prepared = await self._step(participant_id, until, lease)
                if item is not None:
                    await self._run(item, prepared)
                    await self._notify()
                    continue  # while running; stopping gives the lane up between deliveries
                # Not held (another worker drains it), or given up as idle; a wake-up refused
                # meanwhile is ours to honour.
                if participant_id not in self.again:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("bot lane %s failed; the sweep will retry it", participant_id)
            # The failed step may have taken the lane: give it up now, not when its lease expires.
            await asyncio.shield(db(lanes.release, participant_id, self.owner))
            until = None
        finally:
            if until is not None:
                await asyncio.shield(db(lanes.release, participant_id, self.owner))
            if self.lanes.get(participant_id) is asyncio.current_task():
                del self.lanes[participant_id]
            if self.running and participant_id in self.again:
                self.again.discard(participant_id)
                self.wake(participant_id)

    async def _ahead(self, participant_id: str, wake: dict[str, Any], lease: float) -> datetime | None:
        """Run the delivery a wake-up carries before its claim, on the Context this worker kept
        from the participant's last turn, if its bot is pure (``bots.ahead``); its statement
        takes the lane and claims the delivery with the turn. The lease's end if it stored the
        turn (the lane is ours); None if not, with nothing written: the usual way follows."""
        item = ahead.delivery_from_wake(participant_id, wake)
        if item is None or not on_loop.available() or participant_id not in self.kept:
            return None
        spec = registry.get_spec(item.bot_name, read_database=False)
        cached = None if spec is None else self.instances.get((spec.name, participant_id))
        if spec is None or cached is None or cached[0] != spec.version or not getattr(cached[1], "pure", False):
            return None
        if spec.timeout and spec.timeout > conf.timeout():
            return None
        kept = self.kept.pop(participant_id)  # the bot changes it: kept again only if stored
        bot, context = cached[1], kept.context
        until = timezone.now() + timedelta(seconds=lease)
        claim = ahead.Claim(self.owner, until, kept.version)
        token = outbox.current_hop.set(item.hop + 1)
        running = outbox.current_delivery.set(item)
        try:
            replies = await self._turn(bot, item, context, spec.timeout or conf.timeout())
            version = await delivery.save_turn_on_loop(
                kept.participant, replies, context, item.id, client_prefix=f"bot-{item.id}", claim=claim
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # the usual way runs it again, and records what goes wrong
            logger.debug("bot %s: delivery %s not run ahead", item.bot_name, item.id, exc_info=True)
            return None
        finally:
            outbox.current_hop.reset(token)
            outbox.current_delivery.reset(running)
        if version is None:
            return None
        self._keep(kept.participant, context, version)
        return until

    def _keep(self, participant: Participant, context: Context, version: datetime) -> None:
        """Keep a bot's Context as its turn stored it (read back from its JSON, as a claim
        would read it) for its next turn."""
        stored = Context.from_dict(
            orjson.loads(json_to_db(context.to_dict())),
            participant_id=context.participant_id,
            conversation_id=context.conversation_id,
            bot_name=context.bot_name,
        )
        stored.updated_at = version
        stored.created_at = stored.created_at or version
        key = str(participant.pk)
        self.kept[key] = ahead.Kept(participant, stored, version)
        self.kept.move_to_end(key)
        while len(self.kept) > MAX_KEPT:
            self.kept.popitem(last=False)

    async def _step(self, participant_id: str, until: datetime | None, lease: float) -> tuple:
        """``_next``, with its common cases on the event loop's own connection (PostgreSQL):
        the lane taken and a delivery claimed, or, on a lane we hold, the next one claimed or
        the idle lane given up, each by one statement that reads what the delivery needs, then
        prepared without the database where it needs none. Anything else (a renewal due, the
        lane taken with nothing to run, deliveries a stopped worker left running, an error) is
        ``_next``'s in a thread, as before. (bench/: every thread hop of the echo's way costs
        ~0.4 ms once the process has idled.)"""
        if on_loop.available() and (until is None or not _renewal_due(until, lease)):
            kept = self.kept.get(participant_id)
            version = None if kept is None else kept.version
            if until is None:
                taken = await lanes.take_and_claim_on_loop(participant_id, self.owner, lease, version)
            else:
                taken = await lanes.claim_or_release_on_loop(participant_id, self.owner, until, version)
                if taken is True:
                    return None, None, None
            if isinstance(taken, lanes.Taken):
                assert taken.item is not None and taken.read is not None
                read = _with_kept(taken, kept)
                prepared = self._prepared_in_memory(taken.item, read)
                if prepared is None:
                    prepared = await db(self._prepare, taken.item, read)
                return taken.until, taken.item, prepared
        return await db(self._next, participant_id, until, lease)

    def _next(self, participant_id: str, until: datetime | None, lease: float) -> tuple:
        """One thread hop of a lane: take the lane (or renew it when due), claim the next
        delivery and prepare it; with nothing to run, give the lane up (refused while a
        delivery can run: then claim again). Returns (lease end or None, delivery or None,
        what ``_prepare`` returned)."""
        while True:
            read = None
            if until is None:
                kept = self.kept.get(participant_id)
                taken = lanes.take_and_claim(participant_id, self.owner, lease, None if kept is None else kept.version)
                if taken is None:
                    return None, None, None
                until, item, read = taken.until, taken.item, _with_kept(taken, kept)
            else:
                if _renewal_due(until, lease):
                    until = lanes.renew(participant_id, self.owner, lease)
                    if until is None:
                        return None, None, None
                item = lanes.claim_next(participant_id, self.owner)
            if item is not None:
                return until, item, self._prepare(item, read)
            if lanes.release_if_idle(participant_id, self.owner):
                return None, None, None

    def _prepare(
        self, item: BotDelivery, read: tuple[Participant | None, Any] | None = None
    ) -> tuple[registry.BotSpec, Participant, Context | None] | None:
        """Everything a delivery needs from the database in one query (unless ``read`` with
        the claim already: ``lanes.take_and_claim``): the participant, its conversation and
        its stored Context (None: skipped)."""
        spec = registry.get_spec(item.bot_name)
        if read is None:
            participant, context = delivery.participant_and_context(item.participant_id)
        else:
            participant, row = read
            context = None if participant is None else _context_of(participant, row)
        if spec is None or participant is None:
            outbox.finish(item.id, BotDelivery.Status.SKIPPED, "the bot is not installed any more")
            return None
        if not participant.is_active:
            outbox.finish(item.id, BotDelivery.Status.SKIPPED, "the bot has left the conversation")
            return spec, participant, None
        if spec.timeout and spec.timeout > conf.timeout():
            lanes.extend(str(participant.pk), self.owner, spec.timeout + LEASE_MARGIN)
        return spec, participant, context

    @staticmethod
    def _prepared_in_memory(item: BotDelivery, read: tuple) -> tuple | None:
        """``_prepare``'s common case, which needs no database: a bot installed by the settings
        (or in this process) whose participant is active and keeps the default timeout. None
        otherwise: ``_prepare`` then decides in a thread."""
        spec = registry.get_spec(item.bot_name, read_database=False)
        participant, row = read
        if spec is None or participant is None or not participant.is_active:
            return None
        if spec.timeout and spec.timeout > conf.timeout():
            return None
        return spec, participant, _context_of(participant, row)

    async def _end_turn(self, item: BotDelivery, participant: Participant, replies: list, context: Context) -> None:
        """``_commit``; a turn of one reply on the event loop's own connection where it can be
        (``delivery.save_turn_on_loop``): no thread hop before the reply is out. The Context
        stored so is kept for the next turn: its claim need not read it back, and a pure bot
        may run that turn ahead of its claim (``bots.ahead``)."""
        version = await delivery.save_turn_on_loop(
            participant, replies, context, item.id, client_prefix=f"bot-{item.id}"
        )
        if version is None:
            await db(self._commit, item, participant, replies, context)
        else:
            self._keep(participant, context, version)

    @staticmethod
    def _commit(item: BotDelivery, participant: Participant, replies: list, context: Context) -> None:
        """A turn is all or nothing: replies, Context and the delivery's state in one transaction.

        A turn of one reply (or none) is one statement on PostgreSQL where it can be
        (``delivery.save_turn_in_one_statement``). Otherwise its replies take no savepoint each
        (bench/: two round trips per reply on the echo's path). A reply stored already (this
        delivery ran twice: a lease ran out mid-turn) then aborts the transaction, which runs
        again with savepoints, where each resent reply is answered with the stored message.
        Replies with files always take the second way: their files are not stored twice."""
        client_prefix = f"bot-{item.id}"
        if delivery.save_turn_in_one_statement(participant, replies, context, item.id, client_prefix=client_prefix):
            return

        def turn() -> None:
            with transaction.atomic():
                delivery.save_replies(participant, replies, client_prefix=client_prefix)
                delivery.save_context_and_finish(context, item.id)

        if not any(reply.files for reply in replies):
            try:
                with sends_without_savepoints():
                    turn()
                return
            except IntegrityError:
                logger.info("delivery %s: a reply was stored already; the turn runs again", item.id)
        turn()

    async def _run(self, item: BotDelivery, prepared: tuple | None) -> None:
        """Run one delivery to its end: done, failed (recorded and logged) or skipped.
        ``prepared``: what ``_prepare`` read for it (None: skipped already)."""
        if prepared is None:
            return
        spec, participant, context = prepared
        self.kept.pop(str(participant.pk), None)  # this turn keeps it again if it can
        if not participant.is_active:
            self._forget(spec.name, participant.pk)
            return
        timeout = spec.timeout or conf.timeout()
        token = outbox.current_hop.set(item.hop + 1)
        running = outbox.current_delivery.set(item)
        try:
            bot = await self._instance(spec, participant)
            if context is None:
                context = Context.start(
                    bot.start_label,
                    participant_id=str(participant.pk),
                    conversation_id=str(participant.conversation_id),
                    bot_name=participant.bot_name,
                )
            replies = await self._turn(bot, item, context, timeout)
            await self._end_turn(item, participant, replies, context)
        except RetryLater as retry:  # a transport's passing failure (webhook 5xx, time-out)
            logger.warning("bot %s: delivery %s tried again in %g s: %s", item.bot_name, item.id, retry.delay, retry)
            await db(outbox.retry_later, item.id, retry.delay, retry.reason, retry.status)
            asyncio.get_running_loop().call_later(retry.delay, self.wake, str(item.participant_id))
        except TimeoutError:
            await self._failed(item, f"timed out after {timeout:g} s")
        except ReplyError as error:
            await self._failed(item, f"malformed reply refused: {error}")
        except ChatError as error:
            await self._failed(item, f"reply refused by the chat: {error.code}: {error.detail}")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._failed(item, "".join(traceback.format_exception(error, limit=8)))
        else:
            if (item.payload.get("status") or {}).get("event") == "ended":
                self._forget(spec.name, participant.pk)
        finally:
            outbox.current_hop.reset(token)
            outbox.current_delivery.reset(running)

    async def _turn(self, bot: Bot, item: BotDelivery, context: Context, limit: float) -> list:
        """The bot's part of a delivery: its request added to the Context, the bot called
        within ``limit`` seconds (plus a transport's margin: its own time-out fires first), its
        replies checked and added."""
        seconds = limit + getattr(bot, "timeout_margin", 0.0)
        if item.type == BotDelivery.Type.MESSAGE:
            raw = dict(item.payload.get("message") or {})
            redirected = bool(item.payload.get("redirected"))
            context.add_request({**raw, "redirected": True} if redirected else raw)
            result = await self._call(
                bot.on_message, BotMessage.from_dict(raw, redirected=redirected), context, seconds=seconds
            )
        else:
            result = await self._call(
                bot.on_status, BotStatus.from_dict(item.payload.get("status") or {}), context, seconds=seconds
            )
        replies = coerce(result)
        if item.type == BotDelivery.Type.MESSAGE:
            context.add_response([r.to_dict() for r in replies])
        return replies

    async def _failed(self, item: BotDelivery, reason: str) -> None:
        logger.error("bot %s failed on delivery %s (%s): %s", item.bot_name, item.id, item.type, reason)
        await db(outbox.finish, item.id, BotDelivery.Status.FAILED, reason)

    async def _call(self, func: Callable, *args: Any, seconds: float) -> Any:
        """Run bot code with a time limit: coroutines on the loop, plain functions in a thread
        (a thread that hangs is abandoned, not killed: Python cannot stop one)."""
        async with asyncio.timeout(seconds):
            if inspect.iscoroutinefunction(func):
                result = await func(*args)
            else:
                ctx = contextvars.copy_context()
                call = functools.partial(ctx.run, _run_sync_bot, func, *args)
                result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
            if inspect.isawaitable(result):
                result = await result
        return result

    async def _instance(self, spec: registry.BotSpec, participant: Participant) -> Bot:
        """The cached bot object of this participant (rebuilt only when its spec changes)."""
        key = (spec.name, str(participant.pk))
        cached = self.instances.get(key)
        if cached is not None and cached[0] == spec.version:
            self.instances.move_to_end(key)
            return cached[1]
        bot = await db(registry.build, spec)
        if not isinstance(bot, Bot):
            raise TypeError(f"bot {spec.name!r} is a {type(bot).__name__}, not a bots.base.Bot")
        bot._bind(spec.name, str(participant.pk), str(participant.conversation_id))
        if cached is not None:
            _close_later(cached[1])
        self.instances[key] = (spec.version, bot)
        while len(self.instances) > MAX_INSTANCES:
            _close_later(self.instances.popitem(last=False)[1][1])
        return bot

    def _forget(self, name: str, participant_id) -> None:
        self.kept.pop(str(participant_id), None)
        dropped = self.instances.pop((name, str(participant_id)), None)
        if dropped is not None:
            _close_later(dropped[1])

    def instance_for(self, participant_id: str) -> Bot | None:
        """The cached bot object of a participant, if this worker has built it."""
        return next((bot for (_, pid), (_, bot) in self.instances.items() if pid == str(participant_id)), None)


def _with_kept(taken: lanes.Taken, kept: ahead.Kept | None) -> tuple | None:
    """A claim's read (participant, Context row) with what the worker kept in the row's place
    where the claim found it current (``lanes.Taken.kept_current``): its row was not read."""
    if taken.read is None or not taken.kept_current or kept is None:
        return taken.read
    return taken.read[0], kept


def _context_of(participant: Participant, row: Any) -> Context | None:
    """The Context of a claim's read: the kept one, the stored row's, or None for none."""
    if isinstance(row, ahead.Kept):
        return row.context
    return None if row is None else delivery.context_from_row(participant, row)


def _renewal_due(until: datetime, lease: float) -> bool:
    """Less than a delivery's time (and half the margin) is left of our lease."""
    return until - timezone.now() < timedelta(seconds=lease - LEASE_MARGIN / 2)


async def _closing(bot: Bot) -> None:
    """Bots holding connections (``bots.transports.besser``) have ``aclose``; others have nothing."""
    close = getattr(bot, "aclose", None)
    if close is not None:
        await close()


def _close_later(bot: Bot) -> None:
    if getattr(bot, "aclose", None) is not None:
        task = asyncio.get_running_loop().create_task(_closing(bot))
        _closing_tasks.add(task)  # a reference until it ends
        task.add_done_callback(_closing_tasks.discard)


_closing_tasks: set[asyncio.Task] = set()


# ---- where the worker runs ----------------------------------------------------------------------

_embedded: BotWorker | None = None
_embedded_start: asyncio.Task | None = None  # a reference, so the task is not garbage-collected


def ensure_embedded_worker() -> BotWorker:
    """Start this process's worker on the running loop, once (daphne has no lifespan events)."""
    global _embedded, _embedded_start
    loop = asyncio.get_running_loop()
    if _embedded is None or _embedded.loop is not loop or not _embedded.running:
        _embedded = BotWorker(listen=True)
        _embedded.loop = loop
        _embedded.running = True  # claimed now: a second request must not start another
        _embedded_start = loop.create_task(_embedded.start())
    return _embedded


def embedded_application(app):
    """Wrap the ASGI app so the first call starts the embedded worker (if enabled)."""
    if not conf.embedded_worker():
        return app

    async def application(scope, receive, send):
        ensure_embedded_worker()
        return await app(scope, receive, send)

    return application


class BotChannelConsumer(AsyncConsumer):
    """For ``manage.py runworker bots``: hands each channel message to this process's worker."""

    async def bot_wake(self, message: dict[str, Any]) -> None:
        global _embedded
        if _embedded is None or not _embedded.running:
            _embedded = await BotWorker(listen=False).start()
        await _embedded.handle(message)

    bot_message = bot_status = bot_wake

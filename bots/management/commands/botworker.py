"""``python manage.py botworker``: a bot worker process (with Redis; run as many as you like)."""

from __future__ import annotations

import asyncio
import signal

from django.core.management.base import BaseCommand

from bots.worker import BotWorker
from chatroom.serve import freeze_startup_objects, use_uvloop


class Command(BaseCommand):
    help = "Deliver messages and status events to bots (consumes the 'bots' channel). Stop with SIGTERM."

    def handle(self, *args, **options) -> None:
        use_uvloop()  # as daphne (chatroom/serve.py): CHAT_UVLOOP=0 keeps asyncio's own loop
        freeze_startup_objects()  # as daphne: CHAT_GC_FREEZE=0 leaves them in
        asyncio.run(self._run())

    async def _run(self) -> None:
        worker = await BotWorker(listen=True).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(f"bot worker {worker.owner} ready")
        self.stdout.flush()
        await stop.wait()
        await worker.stop()

"""The baseline's ASGI app: ``/ws/rooms/<room>/`` -> ``RoomConsumer`` (no HTTP routes)."""

from __future__ import annotations

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline.settings")
django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.baseline.models import ChatMessage  # noqa: E402

urlpatterns: list = []


class RoomConsumer(AsyncWebsocketConsumer):
    """The Channels tutorial's chat consumer plus one ORM insert per message."""

    async def connect(self) -> None:
        self.group = "room." + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = json.loads(text_data or "{}")
        message = await database_sync_to_async(ChatMessage.objects.create)(
            room=self.group, client_id=data["client_id"], text=data["text"]
        )
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "chat.message",
                "message": {"id": message.pk, "client_id": message.client_id, "text": message.text},
            },
        )

    async def chat_message(self, event: dict) -> None:
        await self.send(text_data=json.dumps({"type": "message.new", "message": event["message"]}))


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/rooms/<str:room>/", RoomConsumer.as_asgi())])})

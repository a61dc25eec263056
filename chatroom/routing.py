"""WebSocket routes of every app."""

from django.urls import path

from conversations.consumers import ConversationConsumer

websocket_urlpatterns = [
    # str, not uuid: an unknown or malformed id gets close code 4404, not a failed handshake.
    path("ws/conversations/<str:conversation_id>/", ConversationConsumer.as_asgi()),
]

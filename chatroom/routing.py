"""WebSocket routes of every app (the conversation socket arrives with the real-time layer)."""

websocket_urlpatterns: list = []

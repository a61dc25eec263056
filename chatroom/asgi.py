"""ASGI entry point: HTTP through Django, WebSockets through Channels' router."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatroom.settings")
django_asgi_app = get_asgi_application()  # populate apps before importing consumers

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from bots.consumers import route_bot_sockets  # noqa: E402
from bots.worker import BotChannelConsumer, embedded_application  # noqa: E402
from chatroom.routing import websocket_urlpatterns  # noqa: E402

# "channel": `manage.py runworker bots`. embedded_application starts the bot worker inside this
# process on the first call when CHAT_EMBEDDED_BOT_WORKER is on (the default without Redis).
application = embedded_application(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # /ws/bots/ (bot token, programs send no Origin) goes around the browsers' origin check.
            # Sockets are a participant's (token, or the session cookie read at connect:
            # conversations.auth.session_of_socket), never a Django user's: no auth or session
            # middleware (a database-thread hop per connect, a wrapper around every frame).
            "websocket": route_bot_sockets(AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns))),
            "channel": ChannelNameRouter({"bots": BotChannelConsumer.as_asgi()}),
        }
    )
)

# The URLconf (the views, the API's schemas) imported now rather than by the first request: a
# process just started answers its first request as fast as the next ones, and start-up's
# objects frozen out of the collector's reach (chatroom/serve.py) include these.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018

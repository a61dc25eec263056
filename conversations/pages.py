"""The web pages: the lobby (``/``), a conversation (``/c/<id>/``: join form or the room).

Views here are thin like the API's: they read the browser session (which participant this
browser is in each conversation, see ``auth.SESSION_KEY``) and render a template; everything
the page does afterwards goes through the HTTP API and the conversation WebSocket from
``static/web/js``. Every page carries a Content-Security-Policy that forbids inline scripts:
templates pass their configuration in ``data-`` attributes, never in a ``<script>`` body.

plotly.js comes from the pinned ``plotly`` package (its bundled ``plotly.min.js``), served by
``plotly_js`` below, so no asset is ever fetched from the internet.
"""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_GET

from .auth import SESSION_KEY
from .chat import Chat
from .models import Participant

RECENT_LIMIT = 20


def content_security_policy(request: HttpRequest) -> str:
    """Scripts only from this origin (no inline, no eval); sockets to this host only.

    Inline styles stay allowed: Plotly sets ``style`` attributes while drawing a chart.
    """
    host = request.get_host()
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def csp(view):
    """Decorate a page view: its response carries the page Content-Security-Policy."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = content_security_policy(request)
        response["Referrer-Policy"] = "same-origin"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    return wrapped


def _session_participants(request: HttpRequest) -> dict[str, str]:
    return dict(request.session.get(SESSION_KEY) or {})


def recent_conversations(request: HttpRequest) -> list[dict]:
    """The conversations this browser created or joined, newest first (from the session)."""
    known = _session_participants(request)
    if not known:
        return []
    people = (
        Participant.objects.filter(pk__in=list(known.values()))
        .select_related("conversation")
        .order_by("-conversation__created_at")[:RECENT_LIMIT]
    )
    items = []
    for p in people:
        if known.get(str(p.conversation_id)) != str(p.pk):
            continue
        conv = p.conversation
        url = reverse("web-conversation", args=[conv.pk])
        items.append(
            {
                "id": str(conv.pk),
                "name": conv.name,
                "status": conv.status,
                "created_at": conv.created_at,
                "nickname": p.name,
                "gone": p.banned or p.left_at is not None,
                "url": url,
                "share_url": request.build_absolute_uri(url),
            }
        )
    return items


@require_GET
@csp
def lobby(request: HttpRequest) -> HttpResponse:
    """Create a conversation; the ones this browser is in, each with its share link."""
    return render(
        request,
        "web/lobby.html",
        {"recent": recent_conversations(request), "csrf_token_value": get_token(request)},
    )


@require_GET
@csp
def conversation(request: HttpRequest, conversation_id) -> HttpResponse:
    """The room when this browser is already a participant, else the join form."""
    chat = Chat.get_chat(conversation_id)
    if chat is None:
        raise Http404("no such conversation")
    conv = chat.conversation
    share_url = request.build_absolute_uri(reverse("web-conversation", args=[conv.pk]))
    pid = _session_participants(request).get(str(conv.pk))
    me = Participant.objects.filter(pk=pid, conversation=conv).first() if pid else None
    context = {"conversation": conv, "share_url": share_url, "csrf_token_value": get_token(request)}
    if me is not None and me.banned:
        return render(request, "web/removed.html", context, status=403)
    if me is None or me.left_at is not None:
        return render(request, "web/join.html", {**context, "left": me is not None})
    return render(
        request,
        "web/room.html",
        {**context, "me": me, "plotly_url": reverse("web-plotly"), "ws_path": f"/ws/conversations/{conv.pk}/"},
    )


def plotly_path() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@require_GET
def plotly_js(request: HttpRequest) -> FileResponse:
    """plotly.js from the pinned Python package; loaded by the room only when a chart arrives."""
    try:
        handle = plotly_path().open("rb")
    except (ImportError, OSError):
        raise Http404("plotly is not installed") from None
    response = FileResponse(handle, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    return response


urlpatterns = [
    path("", lobby, name="web-lobby"),
    path("c/<uuid:conversation_id>/", conversation, name="web-conversation"),
    path("vendor/plotly.min.js", plotly_js, name="web-plotly"),
]

if settings.DEBUG:
    # daphne serves no static files by itself; in production a reverse proxy serves STATIC_ROOT.
    urlpatterns += staticfiles_urlpatterns()

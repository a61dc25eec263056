from django.contrib import admin
from django.urls import include, path

import bots.api  # noqa: F401  mounts the bot API (/api/bot/...) on the main API before its urls are built

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
    path("", include("conversations.pages")),  # web pages: lobby, join, room
]

handler404 = "conversations.views.not_found"

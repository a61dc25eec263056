from django.urls import path

from . import views
from .api import api

urlpatterns = [
    path("api/", api.urls),
    path("files/<uuid:attachment_id>/<str:signature>/", views.download_attachment, name="attachment-download"),
]

"""One table: the messages of the baseline's rooms."""

from django.db import models


class ChatMessage(models.Model):
    room = models.CharField(max_length=100, db_index=True)
    client_id = models.CharField(max_length=64)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "baseline"

    def __str__(self) -> str:
        return f"{self.room}: {self.text[:40]}"

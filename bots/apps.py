from django.apps import AppConfig


class BotsConfig(AppConfig):
    name = "bots"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Tell conversations/ which bots exist; it never imports bot code itself.
        from conversations import bot_directory

        from .registry import installed_bots

        bot_directory.register(installed_bots)

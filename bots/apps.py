from django.apps import AppConfig


class BotsConfig(AppConfig):
    name = "bots"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # conversations/ emits, bots/ subscribes: it tells conversations which bots exist and
        # takes over the deliveries Chat hands to bots (outbox + wake-up); it never imports us.
        from conversations import bot_directory, events

        from . import checks, outbox  # noqa: F401  (checks registers the settings check)
        from .registry import installed_bots

        bot_directory.register(installed_bots)
        events.register_bot_sink(outbox.enqueue, planner=outbox)

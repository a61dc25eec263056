"""``python manage.py bottoken <name>``: a new API token for an external bot (settings or admin).

Printed once; only its hash is stored, so running it again replaces (rotates) the token."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bots.auth import issue_token


class Command(BaseCommand):
    help = "Create (or rotate) the API token of a bot and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the installed bot's name")

    def handle(self, *args, name: str, **options) -> None:
        try:
            token = issue_token(name)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(token)

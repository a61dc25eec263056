"""A bot's Context columns compressed by lz4 on PostgreSQL.

Each turn rewrites the Context, and a bot in a busy room holds 200 turns (~100 KB of JSON):
PostgreSQL compresses such values with pglz by default; with lz4 their upsert took ~1.3 ms
less here (2.2-2.5 ms against 2.9-4.0), stored as small (bench/, docs/performance.md).
It needs PostgreSQL 14 or later built with lz4 (Debian's and the official images are); a
server without it keeps pglz, and nothing else changes. Rows take lz4 as they are rewritten.
"""

from django.db import DatabaseError, migrations, transaction

COLUMNS = ("requests", "responses", "labels", "misc")


def _set_compression(apps, schema_editor, method: str) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return
    meta = apps.get_model("bots", "BotContext")._meta
    quote = schema_editor.quote_name
    changes = ", ".join(
        f"ALTER COLUMN {quote(meta.get_field(name).column)} SET COMPRESSION {method}" for name in COLUMNS
    )
    try:
        with transaction.atomic(using=connection.alias):  # a savepoint: the migration goes on
            schema_editor.execute(f"ALTER TABLE {quote(meta.db_table)} {changes}")
    except DatabaseError:  # "compression method lz4 not supported": pglz stays
        pass


def to_lz4(apps, schema_editor) -> None:
    _set_compression(apps, schema_editor, "lz4")


def to_default(apps, schema_editor) -> None:
    _set_compression(apps, schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0002_external_bots"),
    ]

    operations = [migrations.RunPython(to_lz4, to_default, elidable=True)]

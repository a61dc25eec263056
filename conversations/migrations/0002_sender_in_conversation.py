"""A message's sender belongs to the message's conversation, enforced by the database.

PostgreSQL: a composite foreign key (sender_id, conversation_id) -> participant (id,
conversation_id). SQLite cannot add constraints to a table, so triggers refuse the row instead.
"""

from django.db import migrations

PG_FORWARD = """
ALTER TABLE conversations_message
    ADD CONSTRAINT message_sender_in_conversation
    FOREIGN KEY (sender_id, conversation_id)
    REFERENCES conversations_participant (id, conversation_id)
    DEFERRABLE INITIALLY DEFERRED;
"""
PG_BACKWARD = "ALTER TABLE conversations_message DROP CONSTRAINT message_sender_in_conversation;"

SQLITE_CHECK = """
CREATE TRIGGER message_sender_in_conversation_{op}
BEFORE {OP} ON conversations_message
WHEN NEW.sender_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM conversations_participant
    WHERE id = NEW.sender_id AND conversation_id = NEW.conversation_id
)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: message_sender_in_conversation');
END;
"""


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif vendor == "sqlite":
        for op in ("insert", "update"):
            schema_editor.execute(SQLITE_CHECK.format(op=op, OP=op.upper()))


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)
    elif vendor == "sqlite":
        for op in ("insert", "update"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS message_sender_in_conversation_{op};")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]

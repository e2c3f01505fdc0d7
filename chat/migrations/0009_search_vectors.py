"""Full-text search (chat/search.py): a tsvector per message text, per reasoning and per title, each a stored
generated column with a GIN index.

Generated columns, not columns a service keeps up to date: every write path (the send, the worker's flushes,
edits, the admin) stays correct without knowing about search, and the vector can never drift from its text.
They are not fields of the Django models on purpose: the ORM would then select (and after each save, read
back) every vector with every message, although only the search query reads them.

Only the first 250,000 characters of a text are indexed: a tsvector is limited to 1 MB, and an over-long text
must never make the row's own write fail.
"""

from django.db import migrations, models

VECTORS = [
    # (table, column, source)
    ("chat_message", "content_tsv", "content"),
    ("chat_message", "reasoning_tsv", "reasoning"),
    ("chat_conversation", "title_tsv", "title"),
]


def _forward() -> list[str]:
    statements = []
    for table, column, source in VECTORS:
        statements += [
            f"ALTER TABLE {table} ADD COLUMN {column} tsvector GENERATED ALWAYS AS "
            f"(to_tsvector('english'::regconfig, left({source}, 250000))) STORED",
            f"CREATE INDEX {table}_{column} ON {table} USING gin ({column})",
        ]
    return statements


def _backward() -> list[str]:
    return [f"ALTER TABLE {table} DROP COLUMN {column}" for table, column, _ in VECTORS]


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_api_responses"),
    ]

    operations = [
        migrations.RunSQL(_forward(), _backward()),
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(
                condition=models.Q(("ephemeral", False)),
                fields=["owner", "id"],
                name="conversation_owner_visible",
            ),
        ),
    ]

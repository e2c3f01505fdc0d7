"""Branches: messages become a tree (`Message.parent`), the branch on screen is `Conversation.current_leaf`
and the rows on it are marked `Message.on_branch`; `superseded_at` goes.

Today's data becomes a tree without loss. A message's parent is the message that ended the thread on screen
when it was written: the newest older message of its conversation that had not been superseded by then.
A question an edit replaced and the question that replaced it then share a parent (siblings), and so do a
regenerated answer and the new one; everything never superseded is one path, the current branch, which ends
at the newest of those messages. Each statement is one pass over the table, an index probe per row.
"""

import django.db.models.deletion
from django.db import migrations, models

FILL_PARENTS = """
UPDATE chat_message AS m
SET parent_id = (
    SELECT n.id FROM chat_message AS n
    WHERE n.conversation_id = m.conversation_id
      AND n.created_at <= m.created_at AND (n.created_at < m.created_at OR n.id < m.id)
      AND (n.superseded_at IS NULL OR n.superseded_at > m.created_at)
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT 1
)
"""

FILL_LEAVES = """
UPDATE chat_conversation AS c
SET current_leaf_id = (
    SELECT m.id FROM chat_message AS m
    WHERE m.conversation_id = c.id AND m.superseded_at IS NULL
    ORDER BY m.created_at DESC, m.id DESC
    LIMIT 1
)
"""

# The path from each leaf to its root, walked on the tree just built: what is on screen is exactly that path.
FILL_ON_BRANCH = """
WITH RECURSIVE path(id, parent_id) AS (
    SELECT m.id, m.parent_id FROM chat_conversation AS c JOIN chat_message AS m ON m.id = c.current_leaf_id
    UNION ALL
    SELECT m.id, m.parent_id FROM chat_message AS m JOIN path ON m.id = path.parent_id
)
UPDATE chat_message SET on_branch = true WHERE id IN (SELECT id FROM path)
"""

# Back to 0011: what is off the branch on screen becomes superseded (the other branches stay hidden).
UNFILL = "UPDATE chat_message SET superseded_at = now() WHERE NOT on_branch"

# The new foreign keys are checked at commit (deferred): checked at each statement instead, so the ALTER
# TABLEs after the updates find no pending trigger events.
IMMEDIATE, DEFERRED = "SET CONSTRAINTS ALL IMMEDIATE", "SET CONSTRAINTS ALL DEFERRED"


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0012_organize"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        # False for the rows already there until FILL_ON_BRANCH marks the current branch; True for new rows.
        migrations.AddField(
            model_name="message",
            name="on_branch",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="conversation",
            name="current_leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chat.message",
            ),
        ),
        migrations.RunSQL(
            sql=[IMMEDIATE, FILL_PARENTS, FILL_LEAVES, FILL_ON_BRANCH, DEFERRED],
            reverse_sql=[IMMEDIATE, UNFILL, DEFERRED],
        ),
        migrations.AlterField(
            model_name="message",
            name="on_branch",
            field=models.BooleanField(default=True),
        ),
        migrations.RemoveField(
            model_name="message",
            name="superseded_at",
        ),
    ]

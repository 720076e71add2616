"""Event.txid, the inserting transaction's id, for the feed's visibility horizon (selectors/feed.py).

Added with the constant default 0 first (no table rewrite: existing events keep 0 and stay in id order
before every new one), then given the per-transaction default, which applies to new rows only. The feed's indexes are built
CONCURRENTLY on PostgreSQL (atomic = False), so writing events goes on while they build (ADR 029); the schema
is the same as before that change, and a database that applied the earlier version is not touched."""

from django.db import migrations, models

import migrations_app.expressions
from migrations_app.migration_ops import AddIndexSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("migrations_app", "0009_merge_pages")]

    operations = [
        migrations.AddField(
            model_name="event",
            name="txid",
            field=models.BigIntegerField(db_default=0, editable=False),
        ),
        migrations.AlterField(
            model_name="event",
            name="txid",
            field=models.BigIntegerField(
                db_default=migrations_app.expressions.CurrentTransactionId(), editable=False
            ),
        ),
        AddIndexSafely(
            model_name="event",
            index=models.Index(fields=["txid", "id"], name="event_feed_idx"),
        ),
        AddIndexSafely(
            model_name="event",
            index=models.Index(fields=["organisation", "txid", "id"], name="event_org_feed_idx"),
        ),
        migrations.AddField(
            model_name="webhook",
            name="last_event_txid",
            field=models.BigIntegerField(default=0),
        ),
    ]

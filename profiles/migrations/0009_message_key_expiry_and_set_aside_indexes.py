"""Indexes for two searches that would otherwise read whole tables: expired message keys, and events set aside.

The message keys also lose their index on source_id alone, which their primary key makes redundant: every
index there costs each accepted message, and the one on received_at takes its place.

Both tables take writes all the time and may be large, so no index here is built under a lock that stops them:
the message key index is built CONCURRENTLY, and the events' partial indexes are built the way PostgreSQL
allows on a partitioned table (which refuses CREATE INDEX CONCURRENTLY): an index ON ONLY the parent, then the
same index CONCURRENTLY on each partition, attached to the parent's one by one. The parent's index becomes
valid when every partition has one, and a partition attached later gets its own from the parent.
"""
import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

EVENTS = "profiles_event"
KEYS = "profiles_messagekey"
SET_ASIDE = {"event_set_aside_user": "user_id", "event_set_aside_anonymous": "anonymous_id"}


def _partitions_missing(cursor, index: str) -> list[str]:
    """Partitions of the events table whose own index is not yet attached to the parent's `index`."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass AND NOT EXISTS ("
        "  SELECT 1 FROM pg_inherits a JOIN pg_index x ON x.indexrelid = a.inhrelid "
        "  WHERE a.inhparent = %s::regclass AND x.indrelid = c.oid) "
        "ORDER BY c.relname", [EVENTS, index])
    return [row[0] for row in cursor.fetchall()]


def _create_partial_index(cursor, index: str, column: str) -> None:
    predicate = f"({column}) WHERE profile_id IS NULL"
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON ONLY {EVENTS} {predicate}")
    # A partition created meanwhile by the partition upkeep shows up on the next pass.
    while missing := _partitions_missing(cursor, index):
        for partition in missing:
            own = f"{partition}_{index.removeprefix('event_')}"
            # A concurrent build that failed leaves an invalid index behind; it cannot be attached.
            cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [own])
            row = cursor.fetchone()
            if row is not None and not row[0]:
                cursor.execute(f"DROP INDEX {own}")
            cursor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {own} ON {partition} {predicate}")
            cursor.execute(f"ALTER INDEX {index} ATTACH PARTITION {own}")


def forwards(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for index, column in SET_ASIDE.items():
            _create_partial_index(cursor, index, column)


def backwards(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for index in SET_ASIDE:
            # Dropping the parent's index drops every partition's attached one.
            cursor.execute(f"DROP INDEX IF EXISTS {index}")


def drop_key_source_index(apps, schema_editor):
    """The message keys' index on source_id alone, which the primary key (source_id, message_id) makes redundant."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, KEYS)
        for name, info in constraints.items():
            if info["index"] and not info["primary_key"] and info["columns"] == ["source_id"]:
                cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


def create_key_source_index(apps, schema_editor):
    name = schema_editor._create_index_name(KEYS, ["source_id"])
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {schema_editor.quote_name(name)} "
                          f"ON {KEYS} (source_id)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('profiles', '0008_event_shares_message_columns'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='messagekey',
                    name='source',
                    field=models.ForeignKey(db_constraint=False, db_index=False,
                                            on_delete=django.db.models.deletion.CASCADE, related_name='+',
                                            to='profiles.source'),
                ),
            ],
            database_operations=[migrations.RunPython(drop_key_source_index, create_key_source_index)],
        ),
        AddIndexConcurrently(
            model_name='messagekey',
            index=models.Index(fields=['received_at'], name='messagekey_received_at'),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name='event',
                    index=models.Index(condition=models.Q(('profile__isnull', True)), fields=['user_id'],
                                       name='event_set_aside_user'),
                ),
                migrations.AddIndex(
                    model_name='event',
                    index=models.Index(condition=models.Q(('profile__isnull', True)), fields=['anonymous_id'],
                                       name='event_set_aside_anonymous'),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]

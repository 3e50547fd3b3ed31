"""Accepted messages wait in a queue table; processed events move to a table partitioned by month.

The state changes are what makemigrations writes; the database work is done by hand because Django cannot
create a partitioned table. Existing rows are kept: processed events move to the new events table, pending
ones to the queue, and every (source, messageId) to the table that deduplicates replays.
"""
from datetime import date, datetime, timezone

import django.db.models.deletion
from django.db import migrations, models

OLD_INDEXES = ("event_unique_message", "event_pending", "event_timestamp", "event_profile_timeline")
EVENT_COLUMNS = "id, source_id, message_id, type, event, user_id, anonymous_id, timestamp, received_at, payload"


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _partition_sql(index: int) -> str:
    lower, upper = _month(index), _month(index + 1)
    bound = lambda d: datetime(d.year, d.month, 1, tzinfo=timezone.utc).isoformat()  # noqa: E731
    return (f"CREATE TABLE profiles_event_y{lower.year:04d}m{lower.month:02d} PARTITION OF profiles_event "
            f"FOR VALUES FROM ('{bound(lower)}') TO ('{bound(upper)}')")


def forward(apps, schema_editor):
    connection = schema_editor.connection
    schema_editor.create_model(apps.get_model("profiles", "MessageKey"))
    schema_editor.create_model(apps.get_model("profiles", "PendingEvent"))
    with connection.cursor() as cursor:
        for name in OLD_INDEXES:
            cursor.execute(f"ALTER TABLE profiles_event DROP CONSTRAINT IF EXISTS {name}")
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        cursor.execute("ALTER TABLE profiles_event RENAME TO profiles_event_old")
        cursor.execute("ALTER INDEX profiles_event_pkey RENAME TO profiles_event_old_pkey")
        cursor.execute(
            "CREATE TABLE profiles_event (id bigint NOT NULL, source_id bigint NOT NULL, "
            "message_id varchar(200) NOT NULL, type varchar(16) NOT NULL, event varchar(200) NOT NULL, "
            "user_id varchar(512) NOT NULL, anonymous_id varchar(512) NOT NULL, timestamp timestamptz NOT NULL, "
            "received_at timestamptz NOT NULL, payload jsonb NOT NULL, profile_id bigint NULL, "
            "processed_at timestamptz NOT NULL, error text NOT NULL DEFAULT '', PRIMARY KEY (id, timestamp)) "
            "PARTITION BY RANGE (timestamp)")
        cursor.execute("CREATE TABLE profiles_event_default PARTITION OF profiles_event DEFAULT")
        cursor.execute("CREATE INDEX event_profile_timeline ON profiles_event "
                       "(profile_id, timestamp DESC, id DESC)")
        # Not in the model's state: a BRIN index is a few pages per partition and serves time-range reads.
        cursor.execute("CREATE INDEX event_timestamp_brin ON profiles_event USING brin (timestamp)")
        # Partitions for the months existing events need and the months around now (later months are
        # created by the scheduled maintenance, profiles.services.partitions).
        cursor.execute("SELECT DISTINCT (extract(year FROM timestamp AT TIME ZONE 'UTC') * 12 "
                       "+ extract(month FROM timestamp AT TIME ZONE 'UTC') - 1)::int FROM profiles_event_old "
                       "WHERE processed_at IS NOT NULL")
        now = datetime.now(timezone.utc)
        current = now.year * 12 + now.month - 1
        for index in sorted({row[0] for row in cursor.fetchall()} | set(range(current - 3, current + 3))):
            cursor.execute(_partition_sql(index))
        cursor.execute("INSERT INTO profiles_messagekey (source_id, message_id, received_at) "
                       "SELECT source_id, message_id, received_at FROM profiles_event_old")
        cursor.execute(f"INSERT INTO profiles_pendingevent ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} "
                       "FROM profiles_event_old WHERE processed_at IS NULL")
        cursor.execute(f"INSERT INTO profiles_event ({EVENT_COLUMNS}, profile_id, processed_at, error) "
                       f"SELECT {EVENT_COLUMNS}, profile_id, processed_at, error FROM profiles_event_old "
                       "WHERE processed_at IS NOT NULL")
        # Queue ids continue after the old events', so an event keeps one id for its whole life.
        cursor.execute("SELECT setval(pg_get_serial_sequence('profiles_pendingevent', 'id'), "
                       "coalesce(max(id), 0) + 1, false) FROM profiles_event_old")
        cursor.execute("DROP TABLE profiles_event_old")


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0004_refusal_without_profile'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='MessageKey',
                fields=[
                    ('pk', models.CompositePrimaryKey('source_id', 'message_id', blank=True, editable=False,
                                                      primary_key=True, serialize=False)),
                    ('message_id', models.CharField(max_length=200)),
                    ('received_at', models.DateTimeField()),
                    ('source', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE,
                                                 related_name='+', to='profiles.source')),
                ],
            ),
            migrations.CreateModel(
                name='PendingEvent',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                               verbose_name='ID')),
                    ('message_id', models.CharField(max_length=200)),
                    ('type', models.CharField(choices=[('identify', 'Identify'), ('track', 'Track'), ('page', 'Page'),
                                                       ('screen', 'Screen'), ('group', 'Group'), ('alias', 'Alias')],
                                              max_length=16)),
                    ('event', models.CharField(blank=True, default='', max_length=200)),
                    ('user_id', models.CharField(blank=True, default='', max_length=512)),
                    ('anonymous_id', models.CharField(blank=True, default='', max_length=512)),
                    ('timestamp', models.DateTimeField()),
                    ('received_at', models.DateTimeField()),
                    ('payload', models.JSONField()),
                    ('source', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.PROTECT,
                                                 related_name='+', to='profiles.source')),
                ],
            ),
            migrations.RemoveConstraint(model_name='event', name='event_unique_message'),
            migrations.RemoveIndex(model_name='event', name='event_pending'),
            migrations.RemoveIndex(model_name='event', name='event_timestamp'),
            migrations.AlterField(model_name='event', name='id',
                                  field=models.BigIntegerField(primary_key=True, serialize=False)),
            migrations.AlterField(model_name='event', name='processed_at', field=models.DateTimeField()),
            migrations.AlterField(
                model_name='event', name='profile',
                field=models.ForeignKey(blank=True, db_constraint=False, null=True,
                                        on_delete=django.db.models.deletion.SET_NULL, related_name='events',
                                        to='profiles.profile'),
            ),
            migrations.AlterField(
                model_name='event', name='source',
                field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.PROTECT,
                                        to='profiles.source'),
            ),
        ]),
        migrations.RunPython(forward),
    ]

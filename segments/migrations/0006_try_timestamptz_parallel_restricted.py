"""segments_try_timestamptz catches a failed cast in an exception block, which is a subtransaction: PostgreSQL
cannot start one in a parallel worker ("cannot start subtransactions during a parallel operation"), so the
function may only run in the leader."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("segments", "0005_alter_destination_url")]

    operations = [migrations.RunSQL(
        "ALTER FUNCTION segments_try_timestamptz(text) PARALLEL RESTRICTED",
        "ALTER FUNCTION segments_try_timestamptz(text) PARALLEL SAFE")]

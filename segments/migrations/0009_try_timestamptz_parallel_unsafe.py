"""segments_try_timestamptz catches a failed cast in an exception block, which is a subtransaction. PARALLEL
RESTRICTED (0006) kept it out of parallel workers, but the leader of a parallel plan is in parallel mode too and
cannot start one either ("cannot start subtransactions during a parallel operation"): a query that calls it must
not be planned in parallel at all."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("segments", "0008_learning_roles")]

    operations = [migrations.RunSQL(
        "ALTER FUNCTION segments_try_timestamptz(text) PARALLEL UNSAFE",
        "ALTER FUNCTION segments_try_timestamptz(text) PARALLEL RESTRICTED")]

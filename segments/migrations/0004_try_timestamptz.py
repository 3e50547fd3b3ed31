"""segments_try_timestamptz(text): the instant a trait's text names, or NULL when it is not a strict ISO-8601 date
or date-time (a cast would raise, and PostgreSQL 15 has no pg_input_is_valid). Without an offset the text is
read as UTC, whatever the session's time zone. The pattern is segments.rules.ISO_INSTANT: hours to 23, seconds to
59 and offsets to 15:59, where PostgreSQL and Python's datetime.fromisoformat read the same instants."""
from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION segments_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])?)?$' THEN
        RETURN NULL;
    END IF;
    IF value ~ '(Z|[+-][0-9]{2}:[0-9]{2})$' THEN
        RETURN value::timestamptz;
    END IF;
    RETURN value::timestamp AT TIME ZONE 'UTC';
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("segments", "0003_segment_roles")]
    operations = [migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS segments_try_timestamptz(text)")]

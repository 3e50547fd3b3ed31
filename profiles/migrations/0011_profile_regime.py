"""Profiles store the privacy regime their country traits name, and existing profiles get theirs here.

Adding a column with a constant default only changes the catalogue. The fill is one UPDATE computed in SQL from
the traits, with a copy of consent.regimes' mapping as it stands now: a migration must give the same result
whatever the code becomes later. The copy follows Python exactly (str.strip's whitespace, str.upper's few
non-ASCII letters whose capitals are ASCII), and a test compares the two. Profiles whose country names no
regime keep "" and are not rewritten.
"""
from django.db import migrations, models

GDPR_CODES = ("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO GB "
              "CH").split()
GDPR_NAMES = ["UNITED KINGDOM", "UK", "GREAT BRITAIN", "GERMANY", "DEUTSCHLAND", "FRANCE", "SPAIN", "ITALY",
              "NETHERLANDS", "IRELAND", "SWITZERLAND", "AUSTRIA", "BELGIUM", "SWEDEN", "DENMARK", "FINLAND",
              "NORWAY", "POLAND", "PORTUGAL"]
CCPA_SPELLINGS = ["US", "UNITED STATES", "USA", "UNITED STATES OF AMERICA"]
# Every character str.strip() removes.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# The non-ASCII letters whose str.upper() is (or contains only) ASCII letters; every other non-ASCII character
# stays non-ASCII in both languages, so it never matches a country.
UPPER_TO_ASCII = {"ß": "SS", "ı": "I", "ſ": "S", "ﬀ": "FF", "ﬁ": "FI", "ﬂ": "FL", "ﬃ": "FFI", "ﬄ": "FFL",
                  "ﬅ": "ST", "ﬆ": "ST"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _truthy(value: str) -> str:
    """Python's truth of a JSON value."""
    return (f"CASE jsonb_typeof({value}) WHEN 'string' THEN {value} #>> '{{}}' <> '' "
            f"WHEN 'number' THEN ({value})::numeric <> 0 WHEN 'boolean' THEN ({value})::boolean "
            f"WHEN 'array' THEN jsonb_array_length({value}) > 0 WHEN 'object' THEN {value} <> '{{}}' ELSE false END")


def regime_sql(traits: str) -> str:
    """SQL for the regime ('gdpr', 'ccpa' or '') of a jsonb traits expression: consent.regimes.regime_for with
    an empty default, as of this migration."""
    given = f"({traits} -> 'country')"
    # Python's `traits.get("country") or address.get("country")`, when the address is an object.
    country = (f"CASE WHEN {_truthy(given)} THEN {given} "
               f"WHEN jsonb_typeof({traits} -> 'address') = 'object' THEN {traits} -> 'address' -> 'country' END")
    text = f"(CASE WHEN jsonb_typeof({country}) = 'string' THEN ({country}) #>> '{{}}' END)"
    text = f"btrim({text}, {_literal(WHITESPACE)})"
    for letter, capitals in UPPER_TO_ASCII.items():
        text = f"replace({text}, {_literal(letter)}, {_literal(capitals)})"
    text = f'upper({text} COLLATE "C")'
    gdpr = ", ".join(_literal(s) for s in GDPR_CODES + GDPR_NAMES)
    ccpa = ", ".join(_literal(s) for s in CCPA_SPELLINGS)
    return (f"(SELECT CASE WHEN c IN ({gdpr}) THEN 'gdpr' WHEN c IN ({ccpa}) THEN 'ccpa' ELSE '' END "
            f"FROM (SELECT {text} AS c) n)")


def fill(apps, schema_editor):
    # Tombstones hold no traits; live profiles without a country keep the default "".
    schema_editor.execute(
        f"UPDATE profiles_profile p SET regime = r.regime FROM (SELECT id, {regime_sql('traits')} AS regime "
        "FROM profiles_profile WHERE merged_into_id IS NULL AND traits <> '{}') r "
        "WHERE p.id = r.id AND r.regime <> ''")


class Migration(migrations.Migration):

    dependencies = [
        ("profiles", "0010_source_replaces_identifiers"),
    ]

    operations = [
        migrations.AddField(
            model_name="profile",
            name="regime",
            field=models.CharField(blank=True, db_default="", default="", editable=False, max_length=8),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]

"""Import and export of profiles (django-import-export); in cdp because an import runs the pipeline.

Export writes one row per live profile, masked (profiles.masking) for a reader without the personal data
permission: identifier columns, and emails, phones, names and addresses in the traits. Import never writes profiles
directly: every row becomes a
Segment identify message accepted from the "Import" source and resolved by the pipeline, so an imported
row merges with the profiles the website already built exactly as a live identify call would.
"""
from __future__ import annotations

import hashlib
import json

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from import_export import fields, resources
from import_export.results import Result, RowResult

from cdp.pipeline import pipeline_drain
from profiles.masking import MASK, known_values, mask_identifier, mask_json, mask_traits
from profiles.messages import Rejection, validate_message
from profiles.models import Identifier, Profile
from profiles.selectors import identifier_normalise
from profiles.services.sources import source_get_or_create

IMPORT_SOURCE_NAME = "Import"
# Columns that name the person; every other non-empty column becomes a trait.
IDENTITY_COLUMNS = ("user_id", "email", "phone", "anonymous_id")
# Columns of our own export that are not traits: "id" is internal, "computed" is derived by the platform.
IGNORED_COLUMNS = ("id", "computed")


def _cell(value) -> str:
    return "" if value is None else str(value).strip()


def _split(value) -> list[str]:
    return [part.strip() for part in _cell(value).replace(";", ",").split(",") if part.strip()]


def row_to_message(row: dict) -> dict:
    """One import row as an identify message. Also reads our own export's emails, phones and traits columns.

    A row with neither user_id nor anonymous_id gets an anonymousId derived from its email or phone,
    because the Segment Spec requires one of the two; the same person always gets the same value.
    """
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    if any(MASK in _cell(v) for v in row.values()):
        # A masked export read back would store "a•••@example.com" as someone's email.
        raise ValidationError("This row holds masked values (an export made without the personal data "
                              "permission); import an unmasked export.")
    traits: dict = {}
    if _cell(row.get("traits")):
        try:
            loaded = json.loads(_cell(row["traits"]))
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict):
            raise ValidationError({"traits": "The traits column must hold a JSON object."})
        traits.update(loaded)
    for key, value in row.items():
        if key in IDENTITY_COLUMNS or key in IGNORED_COLUMNS or key in ("traits", "emails", "phones"):
            continue
        if _cell(value):
            traits[key] = value if isinstance(value, (int, float, bool)) else _cell(value)
    emails = _split(row.get("email")) + _split(row.get("emails"))
    phones = _split(row.get("phone")) + _split(row.get("phones"))
    external = []
    if emails:
        traits["email"] = emails[0]
        external += [{"type": "email", "id": e} for e in emails[1:]]
    if phones:
        traits["phone"] = phones[0]
        external += [{"type": "phone", "id": p} for p in phones[1:]]
    message: dict = {"type": "identify", "traits": traits}
    user_id, anonymous_id = _cell(row.get("user_id")), _cell(row.get("anonymous_id"))
    if user_id:
        message["userId"] = user_id
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    if not user_id and not anonymous_id:
        anchor = (emails or phones or [""])[0].lower()
        if not anchor:
            raise ValidationError("A row needs at least one of user_id, email, phone or anonymous_id.")
        message["anonymousId"] = "import-" + hashlib.blake2b(anchor.encode(), digest_size=12).hexdigest()
    if external:
        message["context"] = {"externalIds": external}
    # The same row imported twice is one message: the event store deduplicates it.
    message["messageId"] = "import-" + hashlib.blake2b(orjson.dumps(message, option=orjson.OPT_SORT_KEYS),
                                                       digest_size=16).hexdigest()
    return message


def _message_identifiers(message: dict) -> list[tuple[str, str]]:
    traits = message.get("traits", {})
    found = [("user_id", message.get("userId", "")), ("anonymous_id", message.get("anonymousId", "")),
             ("email", identifier_normalise("email", _cell(traits.get("email")))),
             ("phone", identifier_normalise("phone", _cell(traits.get("phone"))))]
    for item in message.get("context", {}).get("externalIds", []):
        found.append((item["type"], identifier_normalise(item["type"], item["id"])))
    return [(t, v) for t, v in found if v]


def _profiles_by_identifier(messages: list[dict]) -> dict[tuple[str, str], Profile]:
    """Live profiles holding any identifier of the messages, in one query (identifiers move on merge)."""
    wanted = {pair for m in messages for pair in _message_identifiers(m)}
    if not wanted:
        return {}
    rows = Identifier.objects.filter(value__in={v for _, v in wanted}).select_related("profile")
    return {(i.type, i.value): i.profile for i in rows if (i.type, i.value) in wanted}


class ProfileResource(resources.ModelResource):
    id = fields.Field(attribute="id", column_name="id")
    user_id = fields.Field(column_name="user_id")
    emails = fields.Field(column_name="emails")
    phones = fields.Field(column_name="phones")
    traits = fields.Field(column_name="traits")
    computed = fields.Field(column_name="computed")

    class Meta:
        model = Profile
        fields = ("id", "user_id", "emails", "phones", "traits", "computed")
        export_order = ("id", "user_id", "emails", "phones", "traits", "computed")

    def __init__(self, *, mask: bool = False, **kwargs):
        """`mask`: the reader may not see personal data (profiles.masking.masks_for)."""
        super().__init__(**kwargs)
        self.mask = mask

    # --- export -----------------------------------------------------------------------------------

    def get_queryset(self):
        return Profile.objects.filter(merged_into__isnull=True).prefetch_related("identifiers").order_by("id")

    def filter_export(self, queryset, **kwargs):
        # The admin passes its changelist queryset, which may include tombstones.
        return queryset.filter(merged_into__isnull=True).prefetch_related("identifiers")

    def _values(self, profile: Profile, kind: str) -> str:
        # Reads the prefetched identifiers; filtering the manager would cost a query per row.
        values = sorted(i.value for i in profile.identifiers.all() if i.type == kind)
        return ", ".join(mask_identifier(kind, v) for v in values) if self.mask else ", ".join(values)

    def dehydrate_user_id(self, profile):
        return self._values(profile, "user_id")

    def dehydrate_emails(self, profile):
        return self._values(profile, "email")

    def dehydrate_phones(self, profile):
        return self._values(profile, "phone")

    def dehydrate_traits(self, profile):
        traits = mask_traits(profile.traits, known_values(profile.identifiers.all())) if self.mask else profile.traits
        return json.dumps(traits, sort_keys=True, default=str, ensure_ascii=False)

    def dehydrate_computed(self, profile):
        computed = mask_json(profile.computed) if self.mask else profile.computed
        return json.dumps(computed, sort_keys=True, default=str)

    # --- import -----------------------------------------------------------------------------------

    def import_data(self, dataset, dry_run=False, raise_errors=False, use_transactions=None,
                    collect_failed_rows=False, rollback_on_validation_errors=False, **kwargs):
        """Validates every row as an identify message; unless dry_run, accepts them and runs the pipeline.

        One RowResult per row: "new" when no profile holds any of the row's identifiers yet, "update"
        when one does, "invalid" when the row cannot become a valid message (nothing is sent for it).
        """
        result = Result()
        result.diff_headers = list(dataset.headers or [])
        result.add_dataset_headers(result.diff_headers)
        rows = [dict(zip(dataset.headers or [], values)) for values in dataset]
        messages: dict[int, dict] = {}
        problems: dict[int, ValidationError] = {}
        received_at = timezone.now()
        for index, row in enumerate(rows):
            try:
                message = row_to_message(row)
            except ValidationError as exc:
                problems[index] = exc
                continue
            checked = validate_message(message, index=index, received_at=received_at, default_type=None,
                                       max_bytes=settings.COLLECT_MAX_MESSAGE_BYTES)
            if isinstance(checked, Rejection):
                problems[index] = ValidationError(checked.message)
            else:
                messages[index] = message
        if raise_errors and problems:
            raise next(iter(problems.values()))
        existing = _profiles_by_identifier(list(messages.values()))

        if not dry_run and messages:
            from profiles.services.ingest import events_accept

            source = source_get_or_create(name=IMPORT_SOURCE_NAME)
            accepted = events_accept(source=source, messages=list(messages.values()), received_at=received_at)
            order = list(messages)
            for rejection in accepted.rejected:
                problems[order[rejection.index]] = ValidationError(rejection.message)
                messages.pop(order[rejection.index], None)
            pipeline_drain()
        resolved = _profiles_by_identifier(list(messages.values())) if not dry_run else {}

        for index, row in enumerate(rows):
            row_result = RowResult()
            row_result.row_values = row
            row_result.diff = [_cell(row.get(h)) for h in result.diff_headers]
            if index in problems:
                row_result.import_type = RowResult.IMPORT_TYPE_INVALID
                row_result.validation_error = problems[index]
                result.append_invalid_row(index + 1, row, problems[index])
            else:
                identifiers = _message_identifiers(messages[index])
                before = next((existing[i] for i in identifiers if i in existing), None)
                row_result.import_type = RowResult.IMPORT_TYPE_UPDATE if before else RowResult.IMPORT_TYPE_NEW
                row_result.instance = next((resolved[i] for i in identifiers if i in resolved), before)
                if not dry_run and row_result.instance is None:
                    # Accepted but not resolved to a profile (every identifier blocked by a rule).
                    row_result.import_type = RowResult.IMPORT_TYPE_SKIP
                row_result.add_instance_info(row_result.instance)
            result.increment_row_result_total(row_result)
            result.append_row_result(row_result)
        result.total_rows = len(rows)
        return result

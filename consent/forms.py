"""The privacy screens' forms: what a privacy officer may type, checked field by field before any service runs.

Every text field has a length limit and refuses NUL characters (Django's CharField does), every choice is
checked against its list, so bad input is shown next to its field and never reaches the database.
"""
from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, time, timedelta
from functools import lru_cache

from django import forms
from django.utils import timezone

from consent.models import Regime, RequestKind
from profiles.selectors import identifier_normalise

IDENTIFIER_TYPES = [("email", "Email"), ("phone", "Phone"), ("user_id", "User id"), ("anonymous_id", "Anonymous id")]
# A database id: PostgreSQL's bigint. Larger numbers are refused as the wrong id, not sent to the database.
MAX_ID = 2**63 - 1
TRAIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_ROWS = 20


class IdField(forms.IntegerField):
    def __init__(self, **kwargs):
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


class RequestForm(forms.Form):
    kind = forms.ChoiceField(choices=RequestKind.choices)
    regime = forms.ChoiceField(choices=Regime.choices)
    allow_recreation = forms.BooleanField(required=False,
                                          label="Deletion: let later events create a new profile")
    notes = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))


class IdentifierForm(forms.Form):
    type = forms.ChoiceField(choices=IDENTIFIER_TYPES, initial="email", label="Identifier type")
    value = forms.CharField(max_length=512, required=False, label="Identifier value")

    def has_changed(self):
        # A row without a value says nothing, whatever its type: it is left out rather than refused.
        return bool(str(self["value"].value() or "").strip())

    def clean(self):
        data = super().clean()
        kind, value = data.get("type"), (data.get("value") or "").strip()
        if kind in ("email", "phone") and value and not identifier_normalise(kind, value):
            self.add_error("value", "Not an email address." if kind == "email" else "Not a phone number.")
        return data


class ChangeForm(forms.Form):
    key = forms.CharField(max_length=64, required=False, label="Trait")
    value = forms.CharField(max_length=1000, required=False, label="Corrected value")

    def has_changed(self):
        return any(str(self[name].value() or "").strip() for name in ("key", "value"))

    def clean(self):
        data = super().clean()
        key, value = (data.get("key") or "").strip(), (data.get("value") or "").strip()
        if "key" in self.errors or "value" in self.errors:
            return data
        if not key:
            self.add_error("key", "Name the trait to correct.")
        elif not TRAIT_NAME.match(key):
            self.add_error("key", "A trait name is letters, digits and underscores, starting with a letter.")
        if not value:
            self.add_error("value", "Give the corrected value.")
        elif key in ("email", "phone") and not identifier_normalise(key, value):
            self.add_error("value", "Not an email address." if key == "email" else "Not a phone number.")
        data["key"], data["value"] = key, value
        return data


class _RowsFormSet(forms.BaseFormSet):
    """Rows a script adds and removes: a removed row leaves a gap in the numbering, which an empty row fills."""

    def rows(self) -> list[dict]:
        return [form.cleaned_data for form in self.forms if form.has_changed() and form.cleaned_data]


IdentifierFormSet = forms.formset_factory(IdentifierForm, formset=_RowsFormSet, extra=1, max_num=MAX_ROWS,
                                          absolute_max=MAX_ROWS, validate_max=True)
ChangeFormSet = forms.formset_factory(ChangeForm, formset=_RowsFormSet, extra=1, max_num=MAX_ROWS,
                                      absolute_max=MAX_ROWS, validate_max=True)


def _rows(formset_class, data, prefix: str):
    """A formset; one whose numbering did not arrive (a hand-made POST) comes back empty and marked, so the
    page shows working rows again rather than a form that can never be sent."""
    formset = formset_class(data, prefix=prefix)
    if data is not None and not formset.management_form.is_valid():
        formset = formset_class(prefix=prefix)
        formset.lost = True
    return formset


def new_request_forms(data=None) -> tuple[RequestForm, IdentifierFormSet, ChangeFormSet]:
    return RequestForm(data), _rows(IdentifierFormSet, data, "identifiers"), _rows(ChangeFormSet, data, "changes")


def new_request_clean(form: RequestForm, identifiers: IdentifierFormSet, changes: ChangeFormSet) -> dict | None:
    """The arguments of privacy_request_create, or None with every error attached where it belongs. The
    corrected values count for a rectification only, which needs at least one, each trait once."""
    valid = form.is_valid()
    if getattr(identifiers, "lost", False):
        form.add_error(None, "The subject's identifiers did not arrive: give them again.")
        valid = False
    elif not identifiers.is_valid():
        valid = False
    elif not identifiers.rows():
        identifiers._non_form_errors.append("Give at least one identifier of the subject.")
        valid = False
    rectification = form.cleaned_data.get("kind") == RequestKind.RECTIFICATION
    changed: list[dict] = []
    if rectification and getattr(changes, "lost", False):
        form.add_error(None, "The corrected values did not arrive: give them again.")
        valid = False
    elif rectification:
        if changes.is_valid():
            seen: set[str] = set()
            for row in changes.forms:
                if row.has_changed():
                    if row.cleaned_data["key"] in seen:
                        row.add_error("key", "This trait is corrected in a row above already.")
                    seen.add(row.cleaned_data.get("key", ""))
        if not changes.is_valid():
            valid = False
        elif not changes.rows():
            changes._non_form_errors.append("A rectification needs at least one corrected value.")
            valid = False
        else:
            changed = changes.rows()
    elif changes.is_bound and any(row.has_changed() for row in changes.forms):
        changes.is_valid()
        changes._non_form_errors.append("Only a rectification corrects values: choose Rectification, or remove "
                                        "these rows.")
        valid = False
    if not valid:
        return None
    data = form.cleaned_data
    return {"kind": data["kind"], "regime": data["regime"], "notes": data["notes"].strip(),
            "allow_recreation": data["allow_recreation"] and data["kind"] == RequestKind.DELETION,
            "identifiers": [{"type": row["type"], "value": row["value"].strip()} for row in identifiers.rows()],
            "changes": {row["key"]: row["value"] for row in changed} or None}


class VerifyForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000, label="How the identity was verified (optional)")


class ExecuteForm(forms.Form):
    pass


class ExtendForm(forms.Form):
    reason = forms.CharField(max_length=2000, label="Reason for the extension (told to the subject)")


class RejectForm(forms.Form):
    reason = forms.CharField(max_length=2000, label="Reason for the rejection (told to the subject)")


class AssignForm(forms.Form):
    assignee = forms.TypedChoiceField(coerce=int, empty_value=None, required=False, label="Assigned to")

    def __init__(self, *args, officers: dict[int, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [("", "No one")] + [(pk, name) for pk, name in officers.items()]


ACTION_FORMS = {"verify": VerifyForm, "execute": ExecuteForm, "extend": ExtendForm, "reject": RejectForm,
                "assign": AssignForm}


class QueueFilterForm(forms.Form):
    state = forms.ChoiceField(choices=[("open", "Open"), ("closed", "Closed")], required=False)
    q = forms.CharField(required=False, max_length=320, label="Search by email, phone or request id")
    kind = forms.ChoiceField(choices=[("", "Every kind"), *RequestKind.choices], required=False)
    regime = forms.ChoiceField(choices=[("", "Every regime"), *Regime.choices], required=False)
    assignee = forms.ChoiceField(required=False, label="Assigned to")

    def __init__(self, *args, officers: dict[int, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = ([("", "Anyone"), ("none", "No one")]
                                           + [(str(pk), name) for pk, name in officers.items()])

    def selector_arguments(self) -> dict:
        data = self.cleaned_data
        assignee = data.get("assignee") or ""
        return {"closed": data.get("state") == "closed", "query": data.get("q") or "", "kind": data.get("kind") or "",
                "regime": data.get("regime") or "", "unassigned": assignee == "none",
                "assignee_id": int(assignee) if assignee.isdigit() else None}


class AuditFilterForm(forms.Form):
    request = IdField(required=False, label="Request #")
    profile = IdField(required=False, label="Profile #")
    actor = forms.CharField(required=False, max_length=150, label="Actor (username or system part)")
    since = forms.DateField(required=False, label="From (date)", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (date, inclusive)",
                            widget=forms.DateInput(attrs={"type": "date"}))
    before = IdField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        for name in ("since", "until"):
            if data.get(name) and not 1970 <= data[name].year <= 9998:
                self.add_error(name, "A date between 1970 and 9998.")
        if since and until and since > until and not self.errors:
            self.add_error("until", "The end comes before the start.")
        return data

    def selector_arguments(self) -> dict:
        """Dates are days in the viewer's time zone; the log stores instants."""
        data, zone = self.cleaned_data, timezone.get_current_timezone()
        start = datetime.combine(data["since"], time.min, tzinfo=zone) if data.get("since") else None
        end = datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=zone) if data.get("until") else None
        return {"request_id": data.get("request"), "profile_id": data.get("profile"), "actor": data.get("actor") or "",
                "start": start, "end": end, "before_id": data.get("before")}


class ConsentChoiceForm(forms.Form):
    """A choice a person made outside the product (a paper form, a call), as the profile page records it."""

    purpose = forms.SlugField(max_length=64)
    granted = forms.ChoiceField(choices=[("yes", "granted"), ("no", "denied")])
    policy_version = forms.CharField(required=False, max_length=64)
    reason = forms.CharField(required=False, max_length=2000)


# The viewer's time zone (cdp.timezones activates it for every request): the privacy screens offer the choice.
TIME_ZONE_SESSION_KEY = "time_zone"


@lru_cache(maxsize=1)
def time_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory"})


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(label="Times shown in")
    next = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = time_zone_choices()


@lru_cache(maxsize=1)
def time_zone_choices() -> tuple[tuple[str, str], ...]:
    return tuple((name, name.replace("_", " ")) for name in sorted(time_zone_names()))


def time_zone_form(back: str) -> dict:
    """What the screens' time zone form shows: the zone in use among the choices, coming back to `back`. Its
    600 options are rendered by a plain loop: through the select widget's templates they cost 100 ms a page."""
    return {"current": timezone.get_current_timezone_name(), "choices": time_zone_choices(), "next": back}

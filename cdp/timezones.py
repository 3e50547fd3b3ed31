"""The time zone times are shown in: each person's own, chosen from a list and kept in their session.

Chosen rather than guessed from the browser, so the first page after login, a downloaded receipt and a page
fetched without scripts all show the same times, and the zone is always named next to them. Dates the law
counts (a request's due date) stay in the platform's TIME_ZONE whatever a person chooses.
"""
import zoneinfo

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from consent.forms import TIME_ZONE_SESSION_KEY, TimeZoneForm, time_zone_names


class TimeZoneMiddleware:
    """Activates the session's time zone for the request (templates then show every time in it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.session.get(TIME_ZONE_SESSION_KEY) if hasattr(request, "session") else None
        if name in time_zone_names():
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


@login_required
@require_POST
def time_zone_set(request):
    form = TimeZoneForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Choose a time zone from the list.", content_type="text/plain")
    request.session[TIME_ZONE_SESSION_KEY] = form.cleaned_data["time_zone"]
    target = form.cleaned_data["next"]
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/"
    return redirect(target)

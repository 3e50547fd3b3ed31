"""Bearer tokens for the REST API: `Authorization: Bearer <token>`, per user or service account."""
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from profiles.models import ApiToken


LAST_USED_RESOLUTION = timedelta(minutes=1)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
        key = header[1].decode(errors="replace")
        token = (ApiToken.objects.select_related("user").filter(key_hash=ApiToken.hash_key(key), revoked=False)
                 .first())
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Unknown or revoked API token.")
        now = timezone.now()
        # "Last used" to the minute: a write (and a commit's flush) on every request would cost more than the
        # request's own reads.
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return "Bearer"

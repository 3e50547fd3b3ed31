"""Bearer tokens for the REST API: `Authorization: Bearer <token>`, per user or service account."""
from datetime import timedelta

from django.db.models.expressions import RawSQL
from django.utils import timezone
from rest_framework import authentication, exceptions

from profiles.models import ApiToken


LAST_USED_RESOLUTION = timedelta(minutes=1)
# What ModelBackend.get_all_permissions gives an active user who is not a superuser, "app_label.codename" of their
# own permissions and their groups', correlated with the token row's user. (For an active superuser, has_perm
# answers yes without reading it.)
_PERMISSIONS_SQL = """
    SELECT coalesce(array_agg(DISTINCT ct.app_label || '.' || p.codename), '{}')
    FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
    WHERE p.id IN (SELECT up.permission_id FROM auth_user_user_permissions up
                   WHERE up.user_id = "profiles_apitoken"."user_id"
                   UNION ALL
                   SELECT gp.permission_id FROM auth_group_permissions gp
                   JOIN auth_user_groups ug ON ug.group_id = gp.group_id
                   WHERE ug.user_id = "profiles_apitoken"."user_id")
"""


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
                 .annotate(permission_names=RawSQL(_PERMISSIONS_SQL, ())).first())
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Unknown or revoked API token.")
        # Django's ModelBackend reads a user's permissions from this cache when it is set: the token's query
        # loaded them, which saves the two queries the permission check would make on every request.
        token.user._perm_cache = set(token.permission_names)
        now = timezone.now()
        # "Last used" to the minute: a write (and a commit's flush) on every request would cost more than the
        # request's own reads.
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return "Bearer"

"""API tokens for service accounts: one user per integration, in the group of its role."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from profiles.common.permissions import ADMIN, MARKETER, PRIVACY_OFFICER
from profiles.models import ApiToken

# Role names as typed on the command line -> the groups created by migration 0002.
ROLE_GROUPS = {"admin": ADMIN, "marketer": MARKETER, "privacy_officer": PRIVACY_OFFICER}
PREFIX_LENGTH = 8


@transaction.atomic
def api_token_create(*, name: str, role: str) -> tuple[ApiToken, str]:
    """Creates a token for the service account `svc-<name>` (created on first use) in the role's group.

    Returns the token row and the key; only the key's hash is stored, so the key cannot be shown again.
    Raises ValueError for an unknown role or an empty name, Group.DoesNotExist if migrations did not run.
    """
    name = (name or "").strip()
    if not name:
        raise ValueError("A token needs a name.")
    if role not in ROLE_GROUPS:
        raise ValueError(f"Unknown role {role!r}; expected one of {', '.join(ROLE_GROUPS)}.")
    group = Group.objects.get(name=ROLE_GROUPS[role])
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=f"svc-{name}"[:150])
    if created:
        # A service account never logs in with a password; it only holds tokens.
        user.set_unusable_password()
        user.save(update_fields=["password"])
    # The account takes exactly the role asked for, so re-issuing with another role changes it.
    user.groups.set([group])
    key = "cdp_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=key[:PREFIX_LENGTH],
                                    key_hash=ApiToken.hash_key(key))
    return token, key

"""Permissions follow the role groups (Admin, Marketer, Privacy officer) through Django model permissions."""
from rest_framework.permissions import DjangoModelPermissions


class RoleModelPermissions(DjangoModelPermissions):
    """Like DRF's, but reading also needs the model's view permission: a token sees only what its role may."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": ["%(app_label)s.view_%(model_name)s"],
                 "HEAD": ["%(app_label)s.view_%(model_name)s"], "OPTIONS": []}

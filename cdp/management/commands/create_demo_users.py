"""Demo logins, one per role, so the screens and the admin can be tried without setting up users."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from profiles.common.permissions import ADMIN, MARKETER, PRIVACY_OFFICER

# (username, password, group, is_superuser). Every demo user is staff: the marketer uses the admin read-only
# through the Marketer group's view permissions.
DEMO_USERS = [
    ("admin", "admin-demo", ADMIN, True),
    ("marketer", "marketer-demo", MARKETER, False),
    ("privacy", "privacy-demo", PRIVACY_OFFICER, False),
]


class Command(BaseCommand):
    help = ("Creates the demo users admin, marketer and privacy (one per role group); a password once set, by this "
            "command or changed since, is kept (--reset-passwords sets the demo ones again).")

    def add_arguments(self, parser):
        parser.add_argument("--reset-passwords", action="store_true", help="Set the demo passwords again.")

    @transaction.atomic
    def handle(self, *args, reset_passwords: bool = False, **options):
        User = get_user_model()
        for username, password, group_name, superuser in DEMO_USERS:
            # The groups and their permissions come from profiles' migration 0002; a flushed database
            # (transactional tests) has lost them, and an empty group still gives the user the role's name.
            group, _ = Group.objects.get_or_create(name=group_name)
            user, created = User.objects.get_or_create(username=username)
            user.is_staff = True
            user.is_superuser = superuser
            user.is_active = True
            if created or reset_passwords or not user.has_usable_password():
                user.set_password(password)
                shown = password
            else:
                shown = "(password kept)"
            user.save()
            user.groups.set([group])
            self.stdout.write(f"{'created' if created else 'exists '}  {username:<9} / {shown:<15} ({group_name})")
        self.stdout.write(self.style.SUCCESS("Log in at /accounts/login/ with one of the logins above."))

"""Creates an API token for a service account; the token is printed once, alone on the last line."""
from django.core.management.base import BaseCommand, CommandError

from profiles.services.tokens import ROLE_GROUPS, api_token_create


class Command(BaseCommand):
    help = "Create a bearer token for the REST API for the service account svc-NAME in the given role."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--role", required=True, choices=sorted(ROLE_GROUPS))

    def handle(self, *args, name, role, **options):
        try:
            token, key = api_token_create(name=name, role=role)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created token {token.name!r} for {token.user.username} (role {role}). "
                          "Store it now: it cannot be shown again.")
        # Alone on the last line so scripts can take it with `tail -n 1`.
        self.stdout.write(key)

"""`manage.py verify_audit`: checks the audit log's hash chain and names the first broken entry."""
from django.core.management.base import BaseCommand, CommandError

from consent.services.audit import audit_verify


class Command(BaseCommand):
    help = "Checks every audit entry's hash against its content and the previous entry; exits 1 on a break."

    def handle(self, *args, **options):
        checked, broken = audit_verify()
        if broken is not None:
            raise CommandError(f"audit chain broken at entry {broken.pk} ({broken}): its content or its link to the "
                               f"previous entry was changed; {checked} entries before it are intact.")
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {checked} entries"))

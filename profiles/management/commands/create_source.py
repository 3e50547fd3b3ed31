"""Creates a source; its write key is printed alone on the last line."""
from django.core.management.base import BaseCommand, CommandError

from profiles.models import Source


class Command(BaseCommand):
    help = "Create a source that may send events to the collection API, and print its write key."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        name = name.strip()
        if not name:
            raise CommandError("A source needs a name.")
        if Source.objects.filter(name=name).exists():
            raise CommandError(f"A source named {name!r} already exists.")
        source = Source.objects.create(name=name)
        self.stdout.write(f"Created source {source.name!r} (id {source.pk}).")
        # Alone on the last line so scripts can take it with `tail -n 1`.
        self.stdout.write(source.write_key)

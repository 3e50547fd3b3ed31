"""Drains pending events through the pipeline in this process (operations, and the concurrency tests)."""
from django.core.management.base import BaseCommand

from cdp.pipeline import pipeline_drain


class Command(BaseCommand):
    help = "Processes pending events until none are left."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args, batch_size=None, **options):
        total = pipeline_drain(batch_size=batch_size)
        self.stdout.write(f"processed {total} events")

"""Checks that the books balance (``apps/usage/books.py``) and lists every difference;
exits with status 1 when there is one."""

from django.core.management.base import BaseCommand

from apps.usage.books import check_books


class Command(BaseCommand):
    help = __doc__.split("\n")[0]

    def handle(self, *args, **options):
        differences = check_books()
        for difference in differences:
            self.stdout.write(self.style.ERROR(str(difference)))
        if differences:
            self.stdout.write(self.style.ERROR(f"{len(differences)} difference(s)."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("The books balance."))

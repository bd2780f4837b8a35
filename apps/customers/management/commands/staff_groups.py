"""Creates the staff groups (finance, support, read-only) or sets their permissions back
to their definition (``apps/core/staff.py``); run after new models or permissions."""

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

from apps.core import staff


class Command(BaseCommand):
    help = __doc__.split("\n")[0]

    def handle(self, *args, **options):
        staff.apply(Group, Permission)
        for group in Group.objects.filter(name__in=[staff.FINANCE, staff.SUPPORT, staff.READ_ONLY]):
            self.stdout.write(f"{group.name}: {group.permissions.count()} permissions")

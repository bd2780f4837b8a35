from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.customers import selectors, services
from apps.customers.models import ApiKey


class Command(BaseCommand):
    help = (
        "Creates an API key for an organisation (--org SLUG) or a platform service key "
        "(--service) and prints it once, as the last line of the output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--org", metavar="SLUG", help="the organisation the key belongs to")
        owner.add_argument("--service", action="store_true", help="a platform service key")
        parser.add_argument("--name", default="", help="what the key is for")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiKey.Scope.values,
            dest="scopes",
            help="a scope to grant (repeat for several); default: all of the kind's scopes",
        )

    def handle(self, *args, **options) -> None:
        organization = None
        if options["org"]:
            organization = selectors.organization_by_slug(options["org"])
            if organization is None:
                raise CommandError(f"No organisation with slug {options['org']!r}.")
        name = options["name"] or ("Service key" if options["service"] else "Organisation key")
        issued = services.issue_api_key(
            name=name,
            organization=organization,
            service=options["service"],
            scopes=options["scopes"],
        )
        owner = "platform service" if options["service"] else f"organisation {organization.slug}"
        self.stdout.write(f"Created key {issued.api_key.prefix} ({name}) for {owner}.")
        self.stdout.write("Store it now; it cannot be shown again:")
        self.stdout.write(issued.raw_key)

from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "apps.usage"
    label = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from apps.budgets import services as budgets
        from apps.usage import receivers, selectors, tasks  # noqa: F401  (tasks: enqueued by name)

        # A budget opened part-way through its period counts what the period spent so far.
        budgets.read_spent_with(selectors.spent_in_budget_scope)

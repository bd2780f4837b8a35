from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "apps.budgets"
    label = "budgets"
    verbose_name = "Budgets"

    def ready(self) -> None:
        # The tasks are registered now: services enqueue them by name (tasks call
        # services, never the reverse).
        from apps.budgets import tasks  # noqa: F401

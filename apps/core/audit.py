"""Who a change in the audit history is attributed to."""

from django.contrib.auth import get_user_model


def history_user(instance=None, request=None, **kwargs):
    """The signed-in user of the request that made the change; none for an API key (the
    API's principal is a key, not a user), a task or a webhook."""
    user = getattr(request, "user", None)
    if isinstance(user, get_user_model()) and user.is_authenticated:
        return user
    return None

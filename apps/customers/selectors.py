"""Reads of the customers app."""

from __future__ import annotations

import hmac

from apps.core.generations import Generation, GenerationMemo
from apps.customers.models import ApiKey, Organization

# Keys, with their organisation and its plan, are kept in each process's memory for the
# current *access generation*; saving or deleting a key, an organisation or a plan starts
# a new one (``signals``), so a revocation, a suspension or a plan change reaches every
# process within a second. The instances are shared by the requests of one thread: read
# them, never change them in place.
ACCESS = Generation("access")
_keys_by_prefix = GenerationMemo(ACCESS)


def api_key_for_raw_key(raw_key: str) -> ApiKey | None:
    """The key whose secret is ``raw_key`` (revoked or not), or None."""
    prefix = ApiKey.prefix_of(raw_key)
    if prefix is None:
        return None
    known = _keys_by_prefix.entries()
    api_key = known.get(prefix)
    if api_key is None:
        api_key = ApiKey.objects.select_related("organization__plan").filter(prefix=prefix).first()
        if api_key is None:
            return None  # unknown prefixes are not remembered: they cost no memory
        known[prefix] = api_key
    if not hmac.compare_digest(api_key.secret_hash, ApiKey.hash_key(raw_key)):
        return None
    return api_key


def organization_by_slug(slug: str) -> Organization | None:
    return Organization.objects.select_related("plan").filter(slug=slug).first()

"""Wallets and credit grants: the prepaid money of an organisation, kept as ledgers.

Every change of a balance writes its ledger entry in the same transaction, under a row lock
on the balance it changes; balances are never negative beyond the wallet's overdraft limit
(the database checks it too). Usage pays with ``Funds``: lock once, allocate in memory for
a whole batch, write once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from apps.core import hot_rows, pg_array
from apps.core.errors import PortalError
from apps.core.rows import unsaved
from apps.customers.models import CreditEntry, CreditGrant, Organization, Wallet, WalletEntry
from apps.pricing.models import BillingMethod

ZERO = Decimal(0)


class InvalidAmount(PortalError):
    code = "invalid_amount"
    status_code = 400
    message = "The amount must be positive."


class InsufficientWalletBalance(PortalError):
    code = "insufficient_wallet_balance"
    status_code = 402
    message = "The wallet balance does not cover this amount."


class InsufficientCredits(PortalError):
    code = "insufficient_credits"
    status_code = 402
    message = "The organisation's credits do not cover this amount."


# Grants are always locked in this order (Funds, refunds, expiry), so two transactions
# that lock some of the same grants cannot deadlock.
GRANT_LOCK_ORDER = (F("expires_at").asc(nulls_last=True), "id")


def _usable_grants(organization: Organization, at: datetime):
    return (
        CreditGrant.objects.filter(organization=organization, remaining__gt=0)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))
        .order_by(*GRANT_LOCK_ORDER)
    )


def locked_wallet(organization: Organization) -> Wallet:
    """The organisation's wallet (created on first use), locked until the transaction ends."""
    wallet = Wallet.objects.select_for_update().filter(organization=organization).first()
    if wallet is None:
        Wallet.objects.bulk_create(
            [Wallet(organization=organization, currency=organization.currency)],
            ignore_conflicts=True,
        )
        wallet = Wallet.objects.select_for_update().get(organization=organization)
    return wallet


def wallet_balance(organization: Organization) -> Decimal:
    return (
        Wallet.objects.filter(organization=organization).values_list("balance", flat=True).first()
        or ZERO
    )


def credit_balance(organization: Organization, at: datetime | None = None) -> Decimal:
    at = at or timezone.now()
    return (
        CreditGrant.objects.filter(organization=organization, remaining__gt=0)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))
        .aggregate(total=Sum("remaining"))["total"]
        or ZERO
    )


def billing_methods_for(
    organization: Organization, total: Decimal, at: datetime | None = None
) -> list[str]:
    """The methods that could pay ``total`` now, in the order ingestion tries them: the
    plan's inclusion (nothing to pay), credits, the wallet (down to its overdraft limit),
    the period's invoice (unless charges are blocked). Read without locks: a prediction of
    what recording would do, not a reservation."""
    at = at or timezone.now()
    if total == 0:
        return [BillingMethod.SUBSCRIPTION_INCLUDED.value]
    methods = []
    if credit_balance(organization, at) >= total:
        methods.append(BillingMethod.CREDIT_CONSUMPTION.value)
    wallet = Wallet.objects.filter(organization=organization).only(
        "balance", "overdraft_limit").first()  # fmt: skip
    if wallet is not None and wallet.can_pay(total):
        methods.append(BillingMethod.WALLET_DEDUCTION.value)
    if not organization.charges_blocked(at):
        methods.append(BillingMethod.PAYMENT_CHARGE.value)
    return methods


@transaction.atomic
def _write_wallet_entry(
    *, organization: Organization, amount: Decimal, kind: str, reference: str, actor: str,
    reason: str,
) -> WalletEntry:  # fmt: skip
    wallet = locked_wallet(organization)
    if reference:
        existing = WalletEntry.objects.filter(wallet=wallet, kind=kind, reference=reference).first()
        if existing is not None:
            return existing  # a retry of what was already written
    new_balance = wallet.balance + amount
    if new_balance < -wallet.overdraft_limit:
        raise InsufficientWalletBalance(
            details={"balance": str(wallet.balance), "amount": str(-amount)}
        )
    Wallet.objects.filter(pk=wallet.pk).update(balance=new_balance, updated_at=timezone.now())
    return WalletEntry.objects.create(
        wallet=wallet,
        amount=amount,
        kind=kind,
        balance_after=new_balance,
        reference=reference,
        actor=actor,
        reason=reason,
    )


def top_up_wallet(
    *, organization: Organization, amount: Decimal, actor: str, reason: str, reference: str = ""
) -> WalletEntry:
    """Adds prepaid money. With a ``reference`` (a payment or session id) it is written at
    most once, however often it is called."""
    if amount <= 0:
        raise InvalidAmount()
    return _write_wallet_entry(
        organization=organization,
        amount=amount,
        kind=WalletEntry.Kind.TOP_UP,
        reference=reference,
        actor=actor,
        reason=reason,
    )


def adjust_wallet(
    *, organization: Organization, amount: Decimal, actor: str, reason: str, reference: str = ""
) -> WalletEntry:
    """A staff correction in either direction (never below the overdraft limit)."""
    if amount == 0:
        raise InvalidAmount("An adjustment must not be zero.")
    return _write_wallet_entry(
        organization=organization,
        amount=amount,
        kind=WalletEntry.Kind.ADJUSTMENT,
        reference=reference,
        actor=actor,
        reason=reason,
    )


def refund_to_wallet(
    *, organization: Organization, amount: Decimal, reference: str, actor: str, reason: str
) -> WalletEntry:
    if amount <= 0:
        raise InvalidAmount()
    return _write_wallet_entry(
        organization=organization,
        amount=amount,
        kind=WalletEntry.Kind.REFUND,
        reference=reference,
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def grant_credits(
    *,
    organization: Organization,
    amount: Decimal,
    reason: str,
    granted_by: str,
    expires_at: datetime | None = None,
    reference: str = "",
) -> CreditGrant:
    """Grants promotional credits (once per ``reference`` when one is given)."""
    if amount <= 0:
        raise InvalidAmount()
    if reference:
        existing = CreditGrant.objects.filter(organization=organization, reference=reference)
        if (grant := existing.first()) is not None:
            return grant
    try:
        with transaction.atomic():
            grant = CreditGrant.objects.create(
                organization=organization,
                amount=amount,
                remaining=amount,
                currency=organization.currency,
                expires_at=expires_at,
                reason=reason,
                reference=reference,
                granted_by=granted_by,
            )
            CreditEntry.objects.create(
                grant=grant, amount=amount, kind=CreditEntry.Kind.GRANT, actor=granted_by
            )
    except IntegrityError:
        if not reference:
            raise
        # A concurrent call with the same reference granted it first.
        return CreditGrant.objects.get(organization=organization, reference=reference)
    return grant


@transaction.atomic
def refund_credits(
    *, allocations: dict[int, Decimal], reference: str, actor: str
) -> list[CreditEntry]:
    """Gives consumed credits back to the grants they came from."""
    entries = []
    grants = CreditGrant.objects.select_for_update().filter(pk__in=allocations)
    for grant in grants.order_by(*GRANT_LOCK_ORDER):
        amount = allocations[grant.pk]
        # Added here, in Decimal, under the lock (SQLite would add in floating point).
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining + amount)
        entries.append(
            CreditEntry.objects.create(
                grant=grant,
                amount=amount,
                kind=CreditEntry.Kind.REFUND,
                reference=reference,
                actor=actor,
            )
        )
    return entries


@transaction.atomic
def expire_credits(*, now: datetime | None = None) -> int:
    """Writes off what is left of expired grants; running it again changes nothing."""
    now = now or timezone.now()
    expired = 0
    grants = CreditGrant.objects.select_for_update().filter(remaining__gt=0, expires_at__lte=now)
    for grant in grants.order_by(*GRANT_LOCK_ORDER):
        CreditEntry.objects.create(
            grant=grant, amount=-grant.remaining, kind=CreditEntry.Kind.EXPIRY, actor="system"
        )
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=0)
        expired += 1
    return expired


@dataclass
class Funds:
    """An organisation's wallet and usable credits, locked for one transaction. Usage takes
    from them in memory, all-or-nothing per amount; ``write`` stores every balance and
    ledger entry at once."""

    organization: Organization
    wallet: Wallet
    grants: list[CreditGrant]
    wallet_entries: list[WalletEntry] = field(default_factory=list)
    credit_entries: list[CreditEntry] = field(default_factory=list)
    _touched_grants: set[int] = field(default_factory=set)

    @classmethod
    def lock(cls, organization: Organization, *, at: datetime) -> Funds:
        # Lock order, always: credit grants (GRANT_LOCK_ORDER), then the wallet.
        grants = list(_usable_grants(organization, at).select_for_update())
        return cls(organization, locked_wallet(organization), grants)

    @property
    def wallet_balance(self) -> Decimal:
        return self.wallet.balance

    @property
    def credit_balance(self) -> Decimal:
        return sum((grant.remaining for grant in self.grants), ZERO)

    def take_credits(self, amount: Decimal, *, reference: str, actor: str) -> dict[int, Decimal]:
        """Takes ``amount`` from the grants, earliest expiry first; {} if they fall short."""
        if amount > self.credit_balance:
            return {}
        allocations: dict[int, Decimal] = {}
        left = amount
        for grant in self.grants:
            if left == 0:
                break
            part = min(grant.remaining, left)
            if part == 0:
                continue
            grant.remaining -= part
            left -= part
            allocations[grant.pk] = part
            self._touched_grants.add(grant.pk)
            self.credit_entries.append(
                unsaved(
                    CreditEntry,
                    grant=grant,
                    amount=-part,
                    kind=CreditEntry.Kind.CONSUMPTION,
                    reference=reference,
                    actor=actor,
                )
            )
        return allocations

    def take_wallet(self, amount: Decimal, *, reference: str, actor: str) -> bool:
        if not self.wallet.can_pay(amount):
            return False
        self.wallet.balance -= amount
        self.wallet_entries.append(
            unsaved(
                WalletEntry,
                wallet=self.wallet,
                amount=-amount,
                kind=WalletEntry.Kind.DEDUCTION,
                balance_after=self.wallet.balance,
                reference=reference,
                actor=actor,
            )
        )
        return True

    @staticmethod
    def standing_sql(organization_id: int, at: datetime) -> tuple[str, list]:
        """Three columns of one SELECT, read without a lock: the wallet's balance and
        overdraft limit (NULL without a wallet) and the sum of the grants usable at ``at``
        (NULL without any): only to know whether the funds are worth locking."""
        sql = (
            "(SELECT balance FROM customers_wallet WHERE organization_id = %s),"
            " (SELECT overdraft_limit FROM customers_wallet WHERE organization_id = %s),"
            " (SELECT SUM(remaining) FROM customers_creditgrant WHERE organization_id = %s"
            " AND remaining > 0 AND (expires_at IS NULL OR expires_at > %s))"
        )
        return sql, [organization_id, organization_id, organization_id, at]

    @staticmethod
    def snapshot_sql(organization_id: int, at: datetime) -> tuple[str, list]:
        """Two columns of one SELECT: the wallet and the usable grants (in the lock order),
        read without a lock (see ``from_snapshot``)."""
        sql = (
            "(SELECT json_build_array(w.id, w.balance::text, w.overdraft_limit::text,"
            " w.currency) FROM customers_wallet w WHERE w.organization_id = %s),"
            " (SELECT json_agg(json_build_array(g.id, g.remaining::text, g.currency)"
            " ORDER BY g.expires_at ASC NULLS LAST, g.id) FROM customers_creditgrant g"
            " WHERE g.organization_id = %s AND g.remaining > 0"
            " AND (g.expires_at IS NULL OR g.expires_at > %s))"
        )
        return sql, [organization_id, organization_id, at]

    @classmethod
    def from_snapshot(cls, organization: Organization, wallet_row, grant_rows) -> Funds:
        """The funds as ``snapshot_sql``'s columns read them, to allocate in memory."""
        if wallet_row is None:
            wallet = unsaved(Wallet, organization=organization, currency=organization.currency,
                            balance=ZERO, overdraft_limit=ZERO)  # fmt: skip
        else:
            id, balance, overdraft, currency = wallet_row
            wallet = unsaved(Wallet, id=id, organization=organization, balance=Decimal(balance),
                            overdraft_limit=Decimal(overdraft), currency=currency)  # fmt: skip
        grants = [
            unsaved(
                CreditGrant,
                id=id,
                organization=organization,
                remaining=Decimal(remaining),
                currency=currency,
            )  # fmt: skip
            for id, remaining, currency in grant_rows or ()
        ]
        return cls(organization, wallet, grants)

    def hot_part(self) -> hot_rows.Part:
        """Takes what was allocated from funds read without a lock (``from_snapshot``):
        each grant's share and the wallet's by conditional UPDATEs under their row locks,
        in the lock order (grants, then the wallet), with their ledger entries. Its ``apply`` says
        False if any of them no longer held its share (the caller rolls back); each wallet
        entry's balance_after is what the wallet really held after it."""
        taken: dict[int, Decimal] = {}
        for entry in self.credit_entries:
            taken[entry.grant.pk] = taken.get(entry.grant.pk, ZERO) - entry.amount
        grants = [grant for grant in self.grants if grant.pk in taken]  # (in the lock order)
        now = timezone.now()
        ctes, params = [], []
        for index, grant in enumerate(grants):
            ctes.append((f"grant_{index}", "UPDATE customers_creditgrant SET remaining ="
                         " remaining - %s WHERE id = %s AND remaining >= %s AND {after}"
                         " RETURNING id, remaining"))  # fmt: skip
            params += [taken[grant.pk], grant.pk, taken[grant.pk]]
        # The ledger entries as one array a column: a few parameters however many rows.
        if self.credit_entries:
            ctes.append(("credit_entries", "INSERT INTO customers_creditentry (grant_id,"
                         " amount, kind, reference, actor, created_at) SELECT v.grant_id,"
                         " v.amount, %s, v.reference, v.actor, %s::timestamptz FROM"
                         " unnest(%s::bigint[], %s::numeric[], %s::text[], %s::text[])"
                         " WITH ORDINALITY AS v(grant_id, amount, reference, actor, n)"
                         " WHERE {after} ORDER BY v.n RETURNING 1"))  # fmt: skip
            entries = self.credit_entries
            params += [CreditEntry.Kind.CONSUMPTION, now,
                       pg_array.text([entry.grant.pk for entry in entries]),
                       pg_array.text([entry.amount for entry in entries]),
                       pg_array.text([entry.reference for entry in entries]),
                       pg_array.text([entry.actor for entry in entries])]  # fmt: skip
        entries = self.wallet_entries
        total = -sum((entry.amount for entry in entries), ZERO)
        shifts, so_far = [], ZERO  # balance_after = the balance after all of them + shift
        for entry in entries:
            so_far -= entry.amount
            shifts.append(total - so_far)
        if entries:
            ctes.append(("wallet", "UPDATE customers_wallet SET balance = balance - %s,"
                         " updated_at = %s WHERE id = %s AND balance - %s >= -overdraft_limit"
                         " AND {after} RETURNING id, balance"))  # fmt: skip
            ctes.append(("wallet_entries", "INSERT INTO customers_walletentry (wallet_id,"
                         " amount, kind, balance_after, reference, actor, reason, created_at)"
                         " SELECT wallet.id, v.amount, %s, wallet.balance + v.shift,"
                         " v.reference, v.actor, v.reason, %s::timestamptz FROM wallet CROSS JOIN"
                         " unnest(%s::numeric[], %s::numeric[], %s::text[], %s::text[],"
                         " %s::text[]) WITH ORDINALITY AS v(amount, shift, reference, actor,"
                         " reason, n) ORDER BY v.n RETURNING 1"))  # fmt: skip
            params += [total, now, self.wallet.pk, total, WalletEntry.Kind.DEDUCTION, now,
                       pg_array.text([entry.amount for entry in entries]),
                       pg_array.text(shifts),
                       pg_array.text([entry.reference for entry in entries]),
                       pg_array.text([entry.actor for entry in entries]),
                       pg_array.text([entry.reason for entry in entries])]  # fmt: skip
        granted = " UNION ALL ".join(f"SELECT id, remaining FROM grant_{i}"
                                     for i in range(len(grants)))  # fmt: skip
        result = "json_build_array({}, {})".format(
            f"(SELECT json_agg(json_build_array(id, remaining::text)) FROM ({granted}) AS g)"
            if grants else "NULL",
            "(SELECT balance::text FROM wallet)" if entries else "NULL",
        )  # fmt: skip

        def apply(value) -> bool:
            grant_rows, balance = value
            remaining = {id: Decimal(left) for id, left in grant_rows or ()}
            if len(remaining) != len(grants) or (entries and balance is None):
                return False  # one no longer covered its share: nothing will stay
            for grant in grants:
                grant.remaining = remaining[grant.pk]
            if entries:
                self.wallet.balance = Decimal(balance)
                for entry, shift in zip(entries, shifts, strict=True):
                    entry.balance_after = self.wallet.balance + shift
            return True

        return hot_rows.Part(ctes, params, result, apply)

    def write(self) -> None:
        touched = [grant for grant in self.grants if grant.pk in self._touched_grants]
        if touched:
            CreditGrant.objects.bulk_update(touched, ["remaining"])
            CreditEntry.objects.bulk_create(self.credit_entries)
        if self.wallet_entries:
            Wallet.objects.filter(pk=self.wallet.pk).update(
                balance=self.wallet.balance, updated_at=timezone.now()
            )
            WalletEntry.objects.bulk_create(self.wallet_entries)

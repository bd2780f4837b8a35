"""ISO 4217 currencies and their minor units (decimal places of the smallest coin).

The table follows ISO 4217 list one (active codes); funds and precious metals are left out.
"""

from decimal import Decimal

# fmt: off
_THREE = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_ZERO = {
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
    "VND", "VUV", "XAF", "XOF", "XPF",
}
_FOUR = {"CLF", "UYW"}
_TWO = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
    "BDT", "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD",
    "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD",
    "TZS", "UAH", "USD", "UYU", "UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR",
    "ZMW", "ZWG",
}
# fmt: on

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO, 2),
    **dict.fromkeys(_ZERO, 0),
    **dict.fromkeys(_THREE, 3),
    **dict.fromkeys(_FOUR, 4),
}

CURRENCY_CHOICES = sorted((code, code) for code in MINOR_UNITS)


class UnknownCurrency(ValueError):
    pass


def minor_units(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit (USD 2, JPY 0, BHD 3)."""
    try:
        return MINOR_UNITS[currency.upper()]
    except KeyError:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency code.") from None


def minor_unit_quantum(currency: str) -> Decimal:
    """The smallest coin of ``currency`` as a Decimal exponent (USD -> 0.01, JPY -> 1)."""
    return Decimal(1).scaleb(-minor_units(currency))


def is_currency(code: str) -> bool:
    return code.upper() in MINOR_UNITS

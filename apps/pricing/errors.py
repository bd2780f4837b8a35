"""Errors of the pricing domain."""

from apps.core.errors import PortalError


class ProductNotFound(PortalError):
    code = "product_not_found"
    status_code = 404
    message = "No such product."


class PriceNotConfigured(PortalError):
    """The plan (and the catalog) has no price for this product dimension at this instant:
    never priced as zero by accident."""

    code = "price_not_configured"
    status_code = 422
    message = "No price is configured for this product."


class PriceVersionOverlap(PortalError):
    code = "price_version_overlap"
    status_code = 409
    message = "Another version of this price covers part of the same time."


class InvalidUsage(PortalError):
    """Usage the request describes cannot be priced as given; ``details.fields`` names the
    fields, in the same shape as any other field validation error."""

    code = "validation_error"
    status_code = 400
    message = "The request has invalid fields."

    def __init__(self, fields: dict[str, object]) -> None:
        normalized = {
            name: value if isinstance(value, list) else [value] for name, value in fields.items()
        }
        super().__init__(details={"fields": normalized})

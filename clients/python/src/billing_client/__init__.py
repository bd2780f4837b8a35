"""Client of the billing portal's API."""

__version__ = "0.1.0"

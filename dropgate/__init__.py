"""dropgate: an engine for high-traffic drops that cannot oversell, double-redeem or drift."""

__version__ = "0.1.0"

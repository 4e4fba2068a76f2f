"""Herald: business events in, per-user deliveries and suppressions out."""

__version__ = "0.1.0"

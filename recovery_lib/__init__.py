"""Find and recover health metrics lost between ``raw_ingestions`` and the metric tables."""

__version__ = "0.1.0"

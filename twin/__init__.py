"""PipeTwin core: the twin's domain model, settings, CRS, database and CLI root."""

__version__ = "0.1.0"

"""persona-factory: synthetic persona-grounded dialogue datasets."""

__version__ = "0.1.0"

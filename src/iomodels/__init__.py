"""iomodels: one TCP service under every classic Unix IO model, measured side by side."""

__version__ = "0.1.0"

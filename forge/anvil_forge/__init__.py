"""Anvil FORGE: where prompts are written, reviewed, versioned and published."""

__version__ = "0.1.0"

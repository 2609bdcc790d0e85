"""The client's version, in a leaf module so that any part of the client can read it without a circle."""

__version__ = "0.1.0"

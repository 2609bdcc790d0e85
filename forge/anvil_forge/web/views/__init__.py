"""The FORGE's pages. Views authorise, parse, call a service or selector, and respond."""

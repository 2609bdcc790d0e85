"""Start-up hooks for web frameworks: ``django``, ``flask`` and ``fastapi``.

Each module imports its framework only when it is itself imported; ``import anvil_client`` imports none of
them. ``anvil install`` wires the right one into an application.
"""

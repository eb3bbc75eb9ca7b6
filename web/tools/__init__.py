"""Developer tools for the panel (not part of the served app): `python -m web.tools.screenshot`."""

"""Programs run by file path in a builder's interpreter (see build_in_env.py)."""

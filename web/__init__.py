"""The refinery's web panel (FastAPI + Jinja2 + plotly)."""

"""The fleet-health dashboard: a Streamlit multipage app (``edge-monitor dashboard``).

``app.py`` is the entry script; ``pages/`` draws, ``data/`` prepares what a page shows from
``monitor.storage`` query functions (no SQL here), and ``common`` holds what every page shares:
the database, the cache, the time range, empty states and the error boundary. Shipped inside
the package as ``monitor.dashboards`` (pyproject.toml maps it), imported by that name.
"""

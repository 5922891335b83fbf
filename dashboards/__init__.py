"""The fleet-health dashboard: a Streamlit multipage app (``edge-monitor dashboard``).

``app.py`` is the entry script; ``views/`` draws the pages (not ``pages/``: Streamlit would
serve a folder of that name as pages of their own, without ``app.py``); ``data/`` prepares what
a page shows from ``monitor.storage`` query functions (no SQL here); ``common`` holds what every
page shares: the database, the cache, the time range, long tables, empty states and the error
boundary. Shipped inside the package as ``monitor.dashboards`` (pyproject.toml maps it),
imported by that name.
"""

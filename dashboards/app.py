"""The dashboard's entry script: page setup, navigation and the sidebar every page shares.

Run it with ``edge-monitor dashboard``; ``streamlit run dashboards/app.py`` also works, reading
the database from the same settings (``MONITOR_DATABASE_URL`` or the data directory).
"""

from __future__ import annotations

import streamlit as st

from monitor.dashboards import common

# An emoji icon: Streamlit draws it as a data: image. A :material/...: page icon is fetched
# from Google's font servers, and the dashboard must work on a network without internet.
st.set_page_config(page_title="edge-monitor", page_icon="📈", layout="wide")

PAGES = [
    st.Page("views/fleet.py", title="Fleet", icon=":material/hub:", url_path="fleet", default=True),
    st.Page("views/model.py", title="Model", icon=":material/insights:", url_path="model"),
    st.Page("views/node.py", title="Node", icon=":material/memory:", url_path="node"),
    st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page("views/models.py", title="Models", icon=":material/deployed_code:", url_path="models"),
]

page = st.navigation(PAGES)
common.sidebar()
page.run()

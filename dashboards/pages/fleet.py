"""Fleet page."""

from __future__ import annotations

import streamlit as st

from monitor.dashboards import common

st.title("Fleet")
with common.guarded("Fleet"):
    if not common.read(common.model_names):
        common.empty_state(
            "No model yet",
            "Register a model and its reference data, then point the SDK of your nodes at the "
            "collector.",
            "edge-monitor models register NAME --version 1 --reference reference.parquet",
        )

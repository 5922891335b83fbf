"""What each dashboard page shows, prepared from ``monitor.storage`` reads as plain data
(dataclasses and DataFrames): testable without Streamlit, cacheable, no SQL."""

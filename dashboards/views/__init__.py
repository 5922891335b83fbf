"""The dashboard's pages, one script each, run by Streamlit through ``app.py``'s navigation."""

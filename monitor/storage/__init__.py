"""The only package that knows SQL: tables, engine, and query/command functions.

Functions take a Connection and never commit: routes and jobs own their transactions.
"""

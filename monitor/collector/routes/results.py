"""The read API: analysed windows, their results and node health, for the read or admin token."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()

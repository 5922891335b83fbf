"""Admin routes of a model's window policy: read it and set it."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()

"""Admin routes of webhook endpoints and their deliveries."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from monitor import wire
from monitor.collector.auth import admin_only

router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(admin_only)])

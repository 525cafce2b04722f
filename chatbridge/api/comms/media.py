"""The comms API's media routes (issue 15)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()

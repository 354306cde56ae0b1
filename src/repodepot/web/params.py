"""Path parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ID = 2**63 - 1
"""Ids are the databases' 64-bit signed integers: a larger number could name nothing."""

RecordId = Annotated[int, Path(ge=1, le=MAX_ID, description="A record's id")]
"""An id in a path (`/api/imports/{job_id}`): 422 outside 1..2^63-1, never a 500."""

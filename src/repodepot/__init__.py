"""repodepot keeps an organisation's git repositories close."""

from __future__ import annotations

__version__ = "0.1.0"

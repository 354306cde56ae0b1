from __future__ import annotations

from repodepot.cli import main

main()

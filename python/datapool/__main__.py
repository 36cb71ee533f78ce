from __future__ import annotations

from datapool.cli import entry

entry()

"""The pool: its contents (Pool), its files (layout), and the stores that keep it."""

from __future__ import annotations

from datapool.pool.contents import Pool

__all__ = ["Pool"]

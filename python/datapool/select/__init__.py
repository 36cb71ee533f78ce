"""Selection: which candidates join the pool."""

from __future__ import annotations

from datapool.select.fps import Selection, select_diverse

__all__ = ["Selection", "select_diverse"]

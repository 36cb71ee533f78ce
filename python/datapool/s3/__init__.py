"""s3"""

from __future__ import annotations

"""Values as short text: a table's cell, an embedding, a caption; and how wide text is in a
terminal. Pure: numpy is imported only to show an embedding."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

#: a text table keeps cells short, so rows fit a terminal; HTML wraps, so it shows more
MAX_CELL_CHARS = 60


def format_vector(value: bytes | bytearray | memoryview) -> str:
    """An embedding as its first values and its length: ``[0.12, -0.40, …] (128)``."""
    import numpy as np

    vector = np.frombuffer(bytes(value), dtype="<f4")
    head = ", ".join(f"{v:.2f}" for v in vector[:3])
    return f"[{head}, …] ({len(vector)})" if len(vector) > 3 else f"[{head}] ({len(vector)})"


def format_value(value: Any, vector: bool = False, limit: int = MAX_CELL_CHARS) -> str:
    """A cell of a table as short text (NULL for None, a float without noise, bytes summarised,
    at most ``limit`` characters)."""
    if value is None:
        return "NULL"
    if vector and isinstance(value, (bytes, bytearray, memoryview)) and not len(value):
        return "(unreadable image)"   # CONVERT … OPTIONS (on_error='skip') left it out
    if vector and isinstance(value, (bytes, bytearray, memoryview)) and len(value) % 4 == 0:
        return format_vector(value)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value)):,} bytes>"
    text = " ".join(str(value).split()) if isinstance(value, str) and "\n" in value \
        else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide and full-width characters take
    two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)

"""The image column of a query's rows, and its paths: what every statement that reads images
checks the same way."""

from __future__ import annotations

from typing import Any

from ..errors import DataError, NotFoundError, did_you_mean, excerpt
from ..settings import Settings


def image_column(columns: tuple[str, ...], wanted: str, statement: str) -> int:
    """The index of the image column, or a NotFoundError that lists the columns there are."""
    lowered = [c.lower() for c in columns]
    if wanted.lower() not in lowered:
        raise NotFoundError(
            f"{statement}: the query has no column {excerpt(wanted)}",
            hint=f"{did_you_mean(wanted, columns)}Its columns are {', '.join(columns)}. Name "
                 f"the column that holds image paths with OPTIONS (image_col='…').")
    return lowered.index(wanted.lower())


def image_paths(settings: Settings, values: list[Any], column: str,
                statement: str) -> list[str]:
    """The rows' image paths, resolved against the kernel's folder; NULLs are an error."""
    paths: list[str] = []
    for i, value in enumerate(values):
        if value is None or not str(value).strip():
            raise DataError(f"{statement}: row {i + 1} has no image path in {excerpt(column)}",
                            hint="Filter such rows out in the query (WHERE "
                                 f"{column} IS NOT NULL).")
        paths.append(str(settings.resolve(str(value))))
    return paths

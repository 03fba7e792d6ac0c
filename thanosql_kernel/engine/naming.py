"""The names of the columns the engine makes: one place, which the statements and completion
both read."""

from __future__ import annotations

#: the similarity column of the second generation's SEARCH, unless result_col names it
SEARCH_RESULT = "search_result"


def embedding_column(model: str, base_model: str) -> str:
    """The column CONVERT USING ``model`` fills unless result_col names it: ``m_simclr``."""
    return f"{model}_{base_model}".lower()


def similarity_columns(model: str, base_model: str, count: int, *, second: bool,
                       result_col: str | None = None) -> list[str]:
    """The similarity columns SEARCH adds for ``count`` query images.

    The first generation (``images=``): ``<model>_<base>_similarity<N>``, N from 1; the second
    (``search_input=``): ``result_col`` (default ``search_result``), numbered from 1 when
    there are several images.
    """
    if not second:
        return [f"{embedding_column(model, base_model)}_similarity{i + 1}" for i in range(count)]
    name = (result_col or SEARCH_RESULT).lower()
    return [name] if count == 1 else [f"{name}{i + 1}" for i in range(count)]


#: columns every row has without being declared: SQLite's row ids, PostgreSQL's system columns
HIDDEN_COLUMNS = frozenset({"rowid", "oid", "_rowid_", "ctid", "xmin", "xmax", "cmin", "cmax",
                            "tableoid"})


def embedding_column_problem(name: str) -> str | None:
    """Why ``name`` cannot be an embedding column (None: it can): a column the database has
    already in every table, or one that SEARCH adds to its answer."""
    name = name.lower()
    if name in HIDDEN_COLUMNS:
        return f"is a column every row already has in SQLite or PostgreSQL ({name})"
    stem = name.rstrip("0123456789")
    if stem == SEARCH_RESULT or (stem.endswith("_similarity") and stem != "_similarity"):
        return "is a name SEARCH gives the similarity columns it adds"
    return None

"""The shards of a column searched on a Ray cluster (``cluster.shards``), without the cluster:
the ranges of image paths share every row out once, one path's rows together, and the union
of the shards' candidates holds the exact top k of the whole column. The cluster itself is
``test_cluster``'s."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa

from thanosql_kernel.cluster.shards import Shard, shard_names
from thanosql_kernel.storage import EmbeddingColumn, EmbeddingColumns, SqlStore
from thanosql_kernel.vectors import cosine_scores

ROWS, DIM = 3_000, 32


def _urls(tmp_path: object) -> list[str]:
    """SQLite here, and the PostgreSQL server where the run has one (make test-servers)."""
    urls = [f"sqlite:///{tmp_path}/shards.db"]
    if os.environ.get("THANOSQL_DATABASE_URL", "").startswith("postgresql"):
        urls.append(os.environ["THANOSQL_DATABASE_URL"])
    return urls


@pytest.fixture
def columns(tmp_path: object) -> Iterator[list[tuple[str, EmbeddingColumn, np.ndarray,
                                                      list[str]]]]:
    """A column of 3,000 rows on each database: 2,500 paths (500 of them twice, the same
    vector both times, as a table that lists an image twice has), spread vectors and exact
    ties; (url, entry, vectors, paths)."""
    rng = np.random.default_rng(5)
    spread = rng.standard_normal((ROWS - 1_000, DIM)).astype(np.float32)
    ties = np.repeat(rng.standard_normal((10, DIM)).astype(np.float32), 100, axis=0)
    vectors = np.concatenate([spread, ties])
    paths = [f"imgs/{i % 2_500:05d}.png" for i in range(ROWS)]
    vectors[2_500:] = vectors[:500]   # the second row of a path: its image's vector again
    made = []
    for url in _urls(tmp_path):
        table = f"shards_{uuid.uuid4().hex[:8]}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {table} (image_path TEXT, m_simclr "
                                 f"{'BYTEA' if url.startswith('postgresql') else 'BLOB'})")
            conn.exec_driver_sql(f"CREATE INDEX {table}_ix ON {table} (image_path)")
            order = rng.permutation(ROWS)   # the table's order is not the paths' order
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (:p, :v)"),
                         [{"p": paths[i], "v": vectors[i].tobytes()} for i in order])
        engine.dispose()
        made.append((url, EmbeddingColumn(table, "m_simclr", "m", "image_path", DIM,
                                          f"c{table}", ROWS), vectors, paths))
    yield made
    for url, entry, _, _ in made:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {entry.table_name}")
        engine.dispose()


def _ranges(url: str, entry: EmbeddingColumn, parts: int) -> list[tuple[str | None, str | None]]:
    store = SqlStore(url)
    try:
        with store.begin() as conn:
            return EmbeddingColumns(store).ranges(conn, entry, parts)
    finally:
        store.dispose()


def test_the_ranges_share_every_row_out_once_with_a_paths_rows_together(columns: list) -> None:
    for url, entry, _, paths in columns:
        store = SqlStore(url)
        table = EmbeddingColumns(store)
        for parts in (1, 2, 4, 7, 3_000, 5_000):
            ranges = _ranges(url, entry, parts)
            # as many as asked, unless the column has fewer distinct paths than that
            assert len(ranges) == min(parts, len(set(paths))), (url, parts, len(ranges))
            assert ranges[0][0] is None and ranges[-1][1] is None
            seen: list[str] = []
            with store.begin() as conn:
                counted = [table.count_between(conn, entry, r) for r in ranges]
                for between in ranges:
                    held = [p for chunk, _ in table.vector_chunks(conn, entry, 128, between)
                            for p in chunk]
                    assert not set(held) & set(seen), (url, parts, between)
                    seen.extend(held)
            assert sorted(seen) == sorted(paths), (url, parts)
            assert sum(counted) == ROWS
            if parts in (2, 4, 7):   # about even: at most a share and a path's second row
                share = -(-ROWS // parts)
                assert max(counted) <= share + 1, (url, parts, counted)
                assert min(counted) >= 0.9 * ROWS / parts, (url, parts, counted)
        store.dispose()


def test_the_union_of_the_shards_candidates_holds_the_exact_top_k(columns: list) -> None:
    rng = np.random.default_rng(9)
    for url, entry, vectors, paths in columns:
        shards = [Shard(url, entry, low, high) for low, high in _ranges(url, entry, 4)]
        assert [s.ready()[0] for s in shards] and sum(s.ready()[0] for s in shards) == ROWS
        for trial in range(40):
            query = vectors[rng.integers(ROWS)].copy() if trial % 2 else \
                rng.standard_normal(DIM).astype(np.float32)
            scores = cosine_scores(vectors, query)
            for k in (1, 10, 150):
                found = {p for s in shards for p in s.candidates(query, k)}
                kth = np.sort(scores)[-k]
                exact = {paths[i] for i in np.flatnonzero(scores >= kth)}
                assert exact <= found, (url, trial, k, exact - found)
                # a short list from each of the 4 shards (its top k and the rows near its
                # cut), not the shard
                assert len(found) <= len(exact) + 4 * (2 * k + 20), (url, trial, k, len(found))
        # a shard whose range holds no row (more shards than distinct paths)
        empty = Shard(url, entry, "", "")
        assert empty.ready()[0] == 0 and empty.candidates(vectors[0], 10) == []


def test_shard_names_say_which_column_and_which_part() -> None:
    assert shard_names("col_ab12", 3) == ["col_ab12:1/3", "col_ab12:2/3", "col_ab12:3/3"]

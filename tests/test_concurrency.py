"""Two real kernels on one workspace (two notebooks in one folder) working at the same time."""

from __future__ import annotations

import threading
from pathlib import Path

from .conftest import KernelSession, server_env
from .helpers import TINY, make_images

ROUNDS = 3


def test_two_kernels_copy_convert_and_search_at_once(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", count=24)
    with server_env() as env:
        shared = {**env, "THANOSQL_WORKSPACE": str(tmp_path / ".thanosql")}
        a, b = KernelSession(tmp_path, shared), KernelSession(tmp_path, shared)
        try:
            assert a.execute("COPY imgs FROM 'imgs.csv'; COPY log FROM 'imgs.csv'").status == "ok"
            assert a.execute(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} "
                             "AS SELECT * FROM imgs", timeout=120).status == "ok"
            failures: list[str] = []

            def work(kernel: KernelSession, name: str) -> None:
                cells = [f"COPY {name} OPTIONS (overwrite=True) FROM 'imgs.csv'",
                         f"CONVERT USING m OPTIONS (table_name='{name}') "
                         f"AS SELECT * FROM {name}",
                         "COPY log OPTIONS (if_exists='append') FROM 'imgs.csv'",
                         f"SELECT m_simclr_similarity1 AS s FROM (SEARCH IMAGE "
                         f"images='imgs/3.png' USING m AS SELECT * FROM {name}) "
                         "ORDER BY m_simclr_similarity1 DESC LIMIT 3",
                         "SEARCH IMAGE USING m OPTIONS (search_input='imgs/5.png', top_k=2) "
                         "AS SELECT * FROM imgs"]
                for _ in range(ROUNDS):
                    for cell in cells:
                        reply = kernel.execute(cell, timeout=180)
                        if reply.status != "ok":
                            failures.append(f"{name}: {cell[:40]}: {reply.content.get('evalue')}")
                        elif cell.startswith("SELECT m_simclr"):  # the query image itself
                            top = float(reply.texts[-1].splitlines()[2])
                            if abs(top - 1) > 1e-4:
                                failures.append(f"{name}: best similarity {top}")

            threads = [threading.Thread(target=work, args=(a, "t_a")),
                       threading.Thread(target=work, args=(b, "t_b"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert failures == []
            count = a.execute("SELECT count(*) AS n FROM log").texts[-1].split()[-1]
            assert int(count) == 24 * (1 + 2 * ROUNDS)  # no append was lost
            listing = b.execute("SELECT count(*) AS n FROM t_a WHERE m_simclr IS NOT NULL")
            assert listing.texts[-1].split()[-1] == "24"
        finally:
            a.close()
            b.close()


def test_a_catalog_created_by_another_kernel_at_the_same_moment_is_fine(engine, monkeypatch
                                                                        ) -> None:
    """PostgreSQL can let two sessions both see 'missing' and refuse the second CREATE."""
    import sqlalchemy as sa

    from thanosql_kernel.errors import DatabaseError, DiskFullError
    from thanosql_kernel.storage import EmbeddingColumns, ModelRegistry, schema

    store = engine.services.store
    with store.begin(write=True) as other:  # the other kernel's CREATE, committed first
        schema.METADATA.create_all(other, tables=[schema.EMBEDDINGS])

    def the_other_kernel_won(conn, tables, checkfirst):  # this kernel had seen it missing
        raise sa.exc.IntegrityError("CREATE TABLE", {}, Exception("duplicate key value"))

    monkeypatch.setattr(schema.METADATA, "create_all", the_other_kernel_won)
    EmbeddingColumns(store).ensure()  # the race is absorbed
    with store.begin() as conn:
        assert sa.inspect(conn).has_table(schema.EMBEDDINGS.name)

    # a catalog that cannot be made is said; on a full disk, as such
    for refusal, error, words in (("attempt to write a readonly database", DatabaseError,
                                   "readonly database"),
                                  ("database or disk is full", DiskFullError,
                                   "The disk is full under")):
        def broken(conn, tables, checkfirst, refusal=refusal):
            raise sa.exc.OperationalError("CREATE TABLE", {}, Exception(refusal))

        monkeypatch.setattr(schema.METADATA, "create_all", broken)
        try:
            ModelRegistry(store, engine.cwd).entries()
        except error as e:
            assert words in str(e)
        else:
            raise AssertionError(f"a catalog that could not be made ({refusal}) was not said")


def test_a_writer_waits_out_another_writers_lock_then_gives_a_clear_error(tmp_path: Path,
                                                                          monkeypatch) -> None:
    """SQLite: a write waits for another connection's write lock in short slices (so the
    stop button can end the wait, see test_kernel), and says so plainly when it gives up."""
    import sqlite3
    import time

    import pytest

    from thanosql_kernel.errors import DatabaseError
    from thanosql_kernel.storage import sql

    path = tmp_path / "workspace.db"
    store = sql.SqlStore(f"sqlite:///{path}")
    with store.begin(write=True) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    monkeypatch.setattr(sql, "_WRITE_LOCK_WAIT_S", 0.5)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")   # another kernel's long CONVERT
        start = time.monotonic()
        with pytest.raises(DatabaseError, match="held this workspace's write lock"):
            with store.begin(write=True) as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert 0.5 <= time.monotonic() - start < 3
        with store.begin() as conn:   # the writer that gave up did not go back to the pool
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 500
        # the lock is released after several slices: the writer waits it out and writes
        monkeypatch.setattr(sql, "_WRITE_LOCK_WAIT_S", 30.0)
        threading.Timer(0.4, blocker.rollback).start()
        start = time.monotonic()
        with store.begin(write=True) as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert time.monotonic() - start >= 0.3
    finally:
        blocker.close()
    with store.begin() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t").all() == [(2,)]
        # no connection kept the short slice as its busy timeout
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    store.dispose()

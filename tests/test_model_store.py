"""Models live in the database: shared by kernels with different folders, cached by content,
moved in from workspaces of the earlier version, and moved in and out chunk by chunk."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest

from thanosql_kernel.engine import Services
from thanosql_kernel.errors import DataError, NotFoundError
from thanosql_kernel.results import Table
from thanosql_kernel.settings import Settings
from thanosql_kernel.storage import ModelRegistry
from thanosql_kernel.storage.registry import CHUNK_BYTES

from .conftest import Engine
from .helpers import TINY, make_images

SEARCH = ("SELECT image_path, m_simclr_similarity1 FROM (SEARCH IMAGE images='imgs/3.png' "
          "USING m AS SELECT image_path FROM imgs) ORDER BY m_simclr_similarity1 DESC LIMIT 5")


def other_kernel(engine: Engine, folder: Path) -> Engine:
    """A second engine on the same database, in a folder (and workspace) of its own."""
    folder.mkdir()
    shutil.copytree(engine.cwd / "imgs", folder / "imgs")   # the images, at the same paths
    shared = {"THANOSQL_DATABASE_URL": engine.services.settings.database_url}
    if engine.services.settings.chroma_url:
        shared["THANOSQL_CHROMA_URL"] = engine.services.settings.chroma_url
    settings = Settings.from_env(cwd=folder, env=shared)
    return Engine(Services.open(settings), folder)


@pytest.fixture
def built(engine: Engine) -> Engine:
    make_images(engine.cwd / "imgs", count=16)
    engine.run("COPY imgs FROM 'imgs.csv'")
    engine.run(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    return engine


def test_a_kernel_in_another_folder_uses_the_model_and_notices_a_rebuild(built: Engine,
                                                                         tmp_path: Path) -> None:
    other = other_kernel(built, tmp_path / "elsewhere")
    try:
        ranked = built.one(SEARCH)
        assert isinstance(ranked, Table) and ranked.rows[0][0] == "imgs/3.png"
        assert other.one(SEARCH) == ranked
        # its files came from the database into the other workspace's cache
        digest = built.services.registry.get("m").digest
        cached = other.cwd / ".thanosql" / "cache" / "models" / str(digest)
        assert sorted(p.name for p in cached.iterdir()) == ["card.json", "model.json",
                                                            "weights.pt"]
        # rebuilt by the first kernel: the second one's loaded copy is stale and replaced
        built.run("BUILD MODEL m USING SimCLR OPTIONS (max_epochs=2, batch_size=8, seed=5, "
                  "overwrite=True) AS SELECT * FROM imgs")
        rebuilt = built.one(SEARCH)
        assert rebuilt != ranked and other.one(SEARCH) == rebuilt
        assert not cached.exists()   # the cache keeps no copy of content no model has
        # and dropped by the first: the second one says so
        built.run("DROP MODEL m")
        with pytest.raises(NotFoundError, match="no model 'm'"):
            other.run(SEARCH)
    finally:
        other.services.close()


def test_a_damaged_cached_copy_is_fetched_again(built: Engine, tmp_path: Path) -> None:
    ranked = built.one(SEARCH)
    entry = built.services.registry.get("m")
    other = other_kernel(built, tmp_path / "elsewhere")
    try:
        folder = other.services.registry.files(entry)
        weights = folder / "weights.pt"
        size = weights.stat().st_size
        weights.write_bytes(b"\0" * size)   # same size, other bytes
        fresh = ModelRegistry(other.services.store, other.cwd / ".thanosql")   # a new process
        assert fresh.files(entry) == folder and weights.read_bytes() != b"\0" * size
        assert other.one(SEARCH) == ranked
    finally:
        other.services.close()


def test_damaged_stored_files_are_a_clear_error(built: Engine, tmp_path: Path) -> None:
    entry = built.services.registry.get("m")
    with built.services.store.begin(write=True) as tx:
        tx.exec_driver_sql("UPDATE thanosql_model_files SET data = data || data "
                           "WHERE file = 'model.json'")
    other = other_kernel(built, tmp_path / "elsewhere")
    try:
        with pytest.raises(DataError, match="damaged") as caught:
            other.run(SEARCH)
        assert "overwrite=True" in (caught.value.hint or "")
        cache = other.cwd / ".thanosql" / "cache" / "models"
        assert not (cache / str(entry.digest)).exists()
        assert not [p for p in cache.iterdir() if p.name.startswith(".fetch")]
    finally:
        other.services.close()


def test_a_model_of_the_earlier_version_moves_into_the_database(built: Engine) -> None:
    """Before this version a model was a folder <workspace>/models/<name>/ plus a catalog row
    without digest and files; its kernel moves it into the database on first use."""
    ranked = built.one(SEARCH)
    entry = built.services.registry.get("m")
    workspace = built.cwd / ".thanosql"
    legacy = workspace / "models" / "m"
    shutil.copytree(built.services.registry.files(entry), legacy)
    shutil.rmtree(workspace / "cache")
    with built.services.store.begin(write=True) as tx:   # the earlier version's catalog
        tx.exec_driver_sql("DROP TABLE thanosql_model_files")
        tx.exec_driver_sql("ALTER TABLE thanosql_models RENAME TO thanosql_models_now")
        tx.exec_driver_sql("CREATE TABLE thanosql_models (name VARCHAR(128) PRIMARY KEY, "
                           "base_model VARCHAR(64) NOT NULL, trained_on TEXT NOT NULL, "
                           "row_count INTEGER NOT NULL, status VARCHAR(32) NOT NULL, "
                           "last_updated_utc TIMESTAMP NOT NULL, card TEXT NOT NULL)")
        tx.exec_driver_sql("INSERT INTO thanosql_models SELECT name, base_model, trained_on, "
                           "row_count, status, last_updated_utc, card FROM thanosql_models_now")
        tx.exec_driver_sql("DROP TABLE thanosql_models_now")
    built.reopen()   # the kernel started again with this version
    try:
        assert built.one("LIST MODEL").rows[0][:4] == ("m", "SimCLR", "SELECT * FROM imgs",
                                                       "ready")
        assert not legacy.exists()
        moved = built.services.registry.get("m")
        assert moved.digest == entry.digest and moved.files == entry.files
        assert built.one(SEARCH) == ranked
    finally:
        built.services.close()


def test_a_model_an_earlier_version_kept_in_another_folder_says_where_it_is(
        built: Engine) -> None:
    with built.services.store.begin(write=True) as tx:
        tx.exec_driver_sql("UPDATE thanosql_models SET digest = NULL, files = NULL")
    built.services.loader.forget()
    with pytest.raises(NotFoundError, match="earlier version") as caught:
        built.run(SEARCH)
    assert "overwrite=True" in (caught.value.hint or "")


def test_big_model_files_move_in_chunks_never_whole_in_memory(engine: Engine,
                                                              tmp_path: Path) -> None:
    """Registering and fetching a model hold at most a chunk or two in memory, not its size."""
    size = 6 * CHUNK_BYTES + 12345
    folder = tmp_path / "big"

    def write(target: Path) -> None:
        with (target / "weights.pt").open("wb") as f:
            for i in range(size // 2**20 + 1):
                f.write(bytes([i % 251]) * min(2**20, size - i * 2**20))
        (target / "model.json").write_text(json.dumps({"format": 2}))

    folder.mkdir()
    registry = engine.services.registry
    tracemalloc.start()
    try:
        registry.register("big", base_model="SimCLR", trained_on="SELECT 1", row_count=1,
                          card={"name": "big"}, write=write, overwrite=False)
        stored_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        entry = registry.get("big")
        assert entry.files["weights.pt"]["size"] == size
        shutil.rmtree(engine.cwd / ".thanosql" / "cache")
        fetched = ModelRegistry(engine.services.store, engine.cwd / ".thanosql").files(entry)
        fetched_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (fetched / "weights.pt").stat().st_size == size
    assert engine.rows("SELECT COUNT(*) FROM thanosql_model_files WHERE file = 'weights.pt'") \
        == [(7,)]
    for peak in (stored_peak, fetched_peak):
        assert peak < 3 * CHUNK_BYTES < size, f"peak {peak / 2**20:.0f} MiB"

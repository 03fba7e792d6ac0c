"""CONVERT USING, SEARCH IMAGE (both generations, as sub-queries) and PRINT IMAGE."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from thanosql_kernel.errors import (
    AlreadyExistsError,
    DatabaseError,
    DataError,
    NotFoundError,
    OptionError,
)
from thanosql_kernel.results import Images, Table

from .conftest import Engine, KernelSession
from .helpers import TINY, make_images

SIM = "m_simclr_similarity1"


@pytest.fixture
def searchable(engine: Engine) -> Engine:
    make_images(engine.cwd / "imgs", count=24)
    engine.run("COPY imgs FROM 'imgs.csv'; COPY other FROM 'imgs.csv'")
    engine.run(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    return engine


def exact_ranking(engine: Engine, query: str, table: str = "imgs") -> list[tuple[str, float]]:
    """The ranking by cosine similarity computed here, from the model, without the engine."""
    from thanosql_kernel.models import embed, load_images

    model, _ = engine.services.loader.load("m")
    paths = [p for (p,) in engine.rows(f"SELECT image_path FROM {table}")]
    vectors = embed(model, load_images([str(engine.cwd / p) for p in paths], 12, 1))
    q = embed(model, load_images([str(engine.cwd / query)], 12, 1))[0]
    # float64, the precision the engine reports in: a float32 sum may order near-ties apart
    sims = (vectors.astype("float64") @ q.astype("float64")) / (
        ((vectors.astype("float64") ** 2).sum(axis=1) * (q.astype("float64") ** 2).sum()) ** 0.5)
    return sorted(zip(paths, sims.tolist(), strict=True), key=lambda x: -x[1])


def test_convert_adds_a_compact_column_and_an_index_in_step(searchable: Engine) -> None:
    result = searchable.one("CONVERT USING m OPTIONS (table_name='imgs') AS SELECT * FROM imgs")
    assert isinstance(result, Table) and result.columns[-1] == "m_simclr"
    assert result.vector_columns == {"m_simclr"}
    from thanosql_kernel.display import table_text
    from thanosql_kernel.vectors import blobs_to_matrix

    assert "(128)" in table_text(result) and "b'" not in table_text(result)
    blobs = [b for (b,) in searchable.rows("SELECT m_simclr FROM imgs ORDER BY image_path")]
    matrix = blobs_to_matrix(blobs)
    assert matrix.shape == (24, 128) and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    with searchable.services.store.begin() as conn:
        [entry] = searchable.services.catalog.entries(conn)
    index = searchable.services.catalog.index
    assert index.count(entry.collection) == 24
    paths = [p for (p,) in searchable.rows("SELECT image_path FROM imgs ORDER BY image_path")]
    hits = index.query(entry.collection, matrix[3], 1)
    assert hits[0][0] == paths[3] and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    # plain SQL shows the column compactly too
    shown = table_text(searchable.one("SELECT m_simclr FROM imgs LIMIT 1"))
    assert shown.splitlines()[-1].endswith("(128)")


def test_convert_again_replaces_column_and_index(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    with searchable.services.store.begin() as conn:
        [first] = searchable.services.catalog.entries(conn)
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    with searchable.services.store.begin() as conn:
        [second] = searchable.services.catalog.entries(conn)
    index = searchable.services.catalog.index
    assert first.collection != second.collection
    assert not index.exists(first.collection) and index.count(second.collection) == 24
    assert second.collection in index.names()


def test_convert_stores_the_compact_copy_that_the_first_search_reads(
        searchable: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """CONVERT writes the column's compact copy to the workspace, so even the first search
    after it (here, in a kernel started again) reads no column; CONVERT again replaces the
    file once it commits, and a CONVERT that fails leaves the file it would replace."""
    from thanosql_kernel.engine.catalog import EmbeddingCatalog
    from thanosql_kernel.storage import EmbeddingColumns

    folder = searchable.services.settings.workspace / "cache" / "search"
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    (first,) = folder.glob("*.compact")
    reads: list[str] = []
    chunks = EmbeddingColumns.vector_chunks
    monkeypatch.setattr(EmbeddingColumns, "vector_chunks", lambda self, conn, entry, *a, **k: (
        reads.append(entry.table_name), chunks(self, conn, entry, *a, **k))[1])
    searchable.reopen()
    expected = exact_ranking(searchable, "imgs/5.png")[:5]
    result = searchable.one("SEARCH IMAGE USING m OPTIONS (search_by='image', "
                            "search_input='imgs/5.png', top_k=5) AS SELECT * FROM imgs")
    assert reads == [] and [r[0] for r in result.rows] == [p for p, _ in expected]
    assert np.allclose([r[-1] for r in result.rows], [s for _, s in expected], atol=1e-5)
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    (second,) = folder.glob("*.compact")
    assert second != first

    publish = EmbeddingCatalog.publish

    def published_then_failed(self: EmbeddingCatalog, tx: Any, entry: Any) -> Any:
        publish(self, tx, entry)   # the new file written: then the commit fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EmbeddingCatalog, "publish", published_then_failed)
    with pytest.raises(OSError):
        searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    assert list(folder.glob("*.compact")) == [second]


def test_failed_or_interrupted_convert_changes_nothing(searchable: Engine, monkeypatch) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    before_rows = searchable.rows("SELECT * FROM imgs ORDER BY image_path")
    before_index = searchable.services.catalog.index.names()
    import thanosql_kernel.models.train as train

    real = train.embed
    for failure in (OSError("disk full"), KeyboardInterrupt()):
        calls: list[int] = []

        def broken(model, images, batch_size=256, _failure=failure, _calls=calls):
            _calls.append(1)
            if len(_calls) > 1:
                raise _failure
            return real(model, images, batch_size) * 0  # would overwrite with zeros

        monkeypatch.setattr(train, "embed", broken)
        with pytest.raises(type(failure)):
            searchable.run("CONVERT USING m OPTIONS (batch_size=4) AS SELECT * FROM imgs")
        assert searchable.rows("SELECT * FROM imgs ORDER BY image_path") == before_rows
        assert searchable.services.catalog.index.names() == before_index
    # a first CONVERT that fails leaves no column behind

    def failing(model, images, batch_size=256):
        raise OSError("disk full")

    monkeypatch.setattr(train, "embed", failing)
    with pytest.raises(OSError):
        searchable.run("CONVERT USING m OPTIONS (batch_size=4) AS SELECT * FROM other")
    assert [c for c in searchable.one("SELECT * FROM other LIMIT 1").columns] == [
        "image_path", "label"]


def test_search_first_generation_equals_exact_cosine(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    query = "imgs/5.png"
    expected = exact_ranking(searchable, query)
    result = searchable.one(f"SEARCH IMAGE images='{query}' USING m AS SELECT * FROM imgs")
    assert result.columns == ("image_path", "label", "m_simclr", SIM)
    got = {row[0]: row[-1] for row in result.rows}
    assert len(got) == 24
    for path, sim in expected:
        assert got[path] == pytest.approx(sim, abs=1e-5)
    # without CONVERT (other table) the embeddings are computed on the fly, same values
    fly = searchable.one(f"SEARCH IMAGE images='{query}' USING m AS SELECT * FROM other")
    assert fly.columns == ("image_path", "label", SIM)
    assert {r[0]: r[-1] for r in fly.rows} == pytest.approx(got, abs=1e-5)


def test_search_as_subquery_with_order_and_limit(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    expected = [p for p, _ in exact_ranking(searchable, "imgs/7.png")[:5]]
    for table in ("imgs", "other"):  # through the index, and computed on the fly
        sql = (f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='imgs/7.png' USING m AS "
               f"SELECT * FROM {table}) ORDER BY {SIM} DESC LIMIT 5")
        result = searchable.one(sql)
        assert [r[0] for r in result.rows] == expected, table
    nested = searchable.one(
        f"SELECT s.image_path FROM (SEARCH IMAGE images='imgs/7.png' USING m AS SELECT * FROM "
        f"(SELECT * FROM imgs WHERE label = 1) AS u) AS s WHERE s.{SIM} > -2 "
        f"ORDER BY s.{SIM} DESC LIMIT 3")
    odd = [p for p, _ in exact_ranking(searchable, "imgs/7.png")
           if int(p.split("/")[1].split(".")[0]) % 2 == 1][:3]
    assert [r[0] for r in nested.rows] == odd


def test_the_vector_index_answers_beyond_the_exact_limit(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    expected = [p for p, _ in exact_ranking(searchable, "imgs/4.png")[:6]]
    sql = (f"SELECT image_path FROM (SEARCH IMAGE images='imgs/4.png' USING m AS "
           f"SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 6")
    assert [r[0] for r in searchable.one(sql).rows] == expected  # exact, in memory
    searchable.reopen(exact_search_max_rows=0)
    assert [r[0] for r in searchable.one(sql).rows] == expected  # from the Chroma index
    # a row added after CONVERT has no embedding: the search still sees it
    searchable.run("INSERT INTO imgs (image_path, label) VALUES ('imgs/4.png', 9)")
    rows = searchable.one(sql.replace("image_path FROM", "image_path, label FROM")).rows
    assert sorted(r[1] for r in rows[:2]) == [0, 9]


def test_a_table_made_again_is_searched_row_by_row(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    searchable.run("DROP TABLE imgs; COPY imgs FROM 'imgs.csv'")
    result = searchable.one(f"SELECT * FROM (SEARCH IMAGE images='imgs/4.png' USING m AS "
                            f"SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 3")
    assert result.columns == ("image_path", "label", SIM)  # no stale embedding column
    assert [r[0] for r in result.rows] == [p for p, _ in exact_ranking(searchable,
                                                                       "imgs/4.png")[:3]]


def test_search_second_generation_sorted_top_k(searchable: Engine) -> None:
    expected = exact_ranking(searchable, "imgs/2.png")[:4]
    result = searchable.one("SEARCH IMAGE USING m OPTIONS (search_by='image', "
                            "search_input='imgs/2.png', top_k=4, result_col='score') "
                            "AS SELECT image_path FROM imgs")
    assert result.columns == ("image_path", "score")
    assert [r[0] for r in result.rows] == [p for p, _ in expected]
    assert [r[1] for r in result.rows] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_search_with_several_images(searchable: Engine) -> None:
    result = searchable.one("SEARCH IMAGE images=['imgs/1.png', 'imgs/2.png'] USING m "
                            "AS SELECT image_path FROM imgs")
    assert result.columns == ("image_path", SIM, "m_simclr_similarity2")
    by_path = {r[0]: r for r in result.rows}
    assert by_path["imgs/1.png"][1] == pytest.approx(1.0, abs=1e-5)
    assert by_path["imgs/2.png"][2] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("cell, error, words", [
    ("SEARCH IMAGE images='nowhere.jpg' USING m AS SELECT * FROM imgs", NotFoundError,
     ["nowhere.jpg"]),
    ("SEARCH IMAGE images='imgs.csv' USING m AS SELECT * FROM imgs", DataError, ["imgs.csv"]),
    ("SEARCH IMAGE images='imgs/1.png' USING nomodel AS SELECT * FROM imgs", NotFoundError,
     ["nomodel", "Models: m"]),
    ("SEARCH IMAGE images='imgs/1.png' USING m AS SELECT label FROM imgs", NotFoundError,
     ["image column", "emb_col"]),
    ("SEARCH IMAGE images='imgs/1.png' USING m OPTIONS (image_col='pic') AS SELECT * FROM imgs",
     NotFoundError, ["pic"]),
    ("SEARCH IMAGE USING m AS SELECT * FROM imgs", OptionError, ["query image"]),
    ("SEARCH IMAGE images='imgs/1.png' USING m OPTIONS (top_k=0) AS SELECT * FROM imgs",
     OptionError, ["top_k"]),
    ("SEARCH IMAGE images='imgs/1.png' USING m AS SELECT * FROM nowhere", Exception,
     ["nowhere"]),
    ("CONVERT USING m OPTIONS (table_name='imgs', image_col='pic') AS SELECT * FROM imgs",
     NotFoundError, ["pic"]),
    ("CONVERT USING m OPTIONS (result_col='label') AS SELECT * FROM imgs", AlreadyExistsError,
     ["label"]),
    ("CONVERT USING nomodel AS SELECT * FROM imgs", NotFoundError, ["nomodel"]),
    ("PRINT IMAGE AS SELECT label FROM imgs", NotFoundError, ["image_path"]),
    ("PRINT IMAGE OPTIONS (width=2) AS SELECT * FROM imgs", OptionError, ["width"]),
])
def test_bad_searches_get_one_clean_error(searchable: Engine, cell: str, error: type,
                                          words: list[str]) -> None:
    before = searchable.rows("SELECT * FROM imgs ORDER BY image_path")
    with pytest.raises(error) as caught:
        searchable.run(cell)
    for word in words:
        assert word in str(caught.value)
    assert searchable.rows("SELECT * FROM imgs ORDER BY image_path") == before


def test_print_image_shows_images_with_captions(searchable: Engine) -> None:
    (searchable.cwd / "broken.png").write_bytes(b"not a png")
    result = searchable.one(
        f"PRINT IMAGE AS (SELECT image_path, {SIM} FROM (SEARCH IMAGE images='imgs/3.png' "
        f"USING m AS SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 4)")
    assert isinstance(result, Images) and len(result.images) == 4 and result.total == 4
    first = result.images[0]
    assert first.path == "imgs/3.png" and first.png.startswith(b"\x89PNG")
    assert f"{SIM}=1" in first.caption and (first.width, first.height) == (48, 48)
    mixed = searchable.one("PRINT IMAGE OPTIONS (width=64) AS SELECT image_path FROM imgs "
                           "WHERE label = 0 UNION ALL SELECT 'missing.png' UNION ALL "
                           "SELECT 'broken.png'")
    assert len(mixed.images) == 14 and mixed.images[0].width == 64
    problems = {i.path: i.problem for i in mixed.images if i.problem}
    assert problems == {"missing.png": "no such file",
                        "broken.png": "not a readable image (UnidentifiedImageError)"}
    limited = searchable.one("PRINT IMAGE OPTIONS (limit=2) AS SELECT * FROM imgs")
    assert len(limited.images) == 2 and limited.total == 24
    from thanosql_kernel.display import to_bundles

    assert to_bundles(limited)[-1]["text/plain"].startswith("showing 2 of 24 images")


def test_a_phone_photo_is_searched_and_shown_as_it_was_held(searchable: Engine) -> None:
    """An image stored on its side with an EXIF Orientation tag (as phones save photos held
    upright) embeds like the upright image and is shown upright."""
    with Image.open(searchable.cwd / "imgs/3.png") as opened:
        upright = np.asarray(opened)
    exif = Image.Exif()
    exif[0x0112] = 6   # view: the stored pixels turned 90 degrees clockwise
    Image.fromarray(np.rot90(upright).copy()).save(searchable.cwd / "held.png",
                                                   exif=exif.tobytes())
    found = searchable.one(
        f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='held.png' USING m AS "
        f"SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 1").rows
    assert found[0][0] == "imgs/3.png" and found[0][1] > 0.9999, found
    wide = np.zeros((10, 30, 3), np.uint8)   # 30 wide, 10 high as stored; 10 x 30 as held
    Image.fromarray(wide).save(searchable.cwd / "tall.jpg", exif=exif.tobytes())
    shown = searchable.one("PRINT IMAGE OPTIONS (width=40) AS SELECT 'tall.jpg' AS image_path")
    assert (shown.images[0].width, shown.images[0].height) == (40, 120)
    with Image.open(io.BytesIO(shown.images[0].png)) as png:
        assert png.size == (40, 120)


def test_tutorial_search_through_the_kernel(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", count=24)
    kernel = KernelSession(tmp_path)
    try:
        for cell in ["COPY imgs FROM 'imgs.csv'",
                     f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs",
                     "%%thanosql\nCONVERT USING m\nOPTIONS (\n    table_name= \"imgs\",\n"
                     "    image_col=\"image_path\"\n    )\nAS \nSELECT * \nFROM imgs\n"]:
            assert kernel.execute(cell, timeout=120).status == "ok"
        reply = kernel.execute(
            f"%%thanosql\nPRINT IMAGE \nAS (\n    SELECT image_path, {SIM} \n    FROM (\n"
            "        SEARCH IMAGE images='imgs/9.png' \n        USING m \n        AS \n"
            f"        SELECT * \n        FROM imgs\n        )\n    ORDER BY {SIM} DESC \n"
            "    LIMIT 4\n    )")
        assert reply.status == "ok"
        # each image as image/png at the size shown (12 px enlarged 4x, pixel for pixel),
        # then its caption
        images, captions = reply.of("display_data"), reply.of("stream")
        assert len(images) == 4 and all("image/png" in d["data"] for d in images)
        assert images[0]["metadata"] == {"image/png": {"width": 48, "height": 48}}
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(base64.b64decode(images[0]["data"]["image/png"]))) as png:
            assert png.size == (48, 48)
        text = "".join(c["text"] for c in captions).splitlines()
        assert len(text) == 4 and text[0].startswith("imgs/9.png")
        reply = kernel.execute("SEARCH IMAGE images='imgs/missing.png' USING m AS "
                               "SELECT * FROM imgs")
        assert reply.status == "error" and reply.content["ename"] == "NotFoundError"
        # the map of the column: one image/png at its size, its caption printed under it
        reply = kernel.execute("PRINT EMBEDDING USING m OPTIONS (color_col='label') AS "
                               "SELECT * FROM imgs")
        assert reply.status == "ok"
        [image], [caption] = reply.of("display_data"), reply.of("stream")
        assert image["metadata"] == {"image/png": {"width": 900, "height": 648}}
        assert image["data"]["text/plain"] == "[image map of imgs.m_simclr]"
        with PILImage.open(io.BytesIO(base64.b64decode(image["data"]["image/png"]))) as png:
            assert png.size == (900, 648)
        assert caption["text"].startswith("PRINT EMBEDDING: 24 rows of imgs.m_simclr")
        # how good the model is, beside raw pixels: a table, and its progress bar on the way
        reply = kernel.execute("EVALUATE USING m OPTIONS (label_col='label', k=4) AS "
                               "SELECT * FROM imgs")
        assert reply.status == "ok"
        [table] = [m["data"]["text/plain"] for m in reply.of("execute_result")]
        header, _, first, second = table.splitlines()[:4]
        assert header.split()[:3] == ["method", "k", "rows"]
        assert first.split()[:3] == ["m", "4", "24"] and second.split()[0] == "raw_pixels"
        bar = (reply.of("display_data") + reply.of("update_display_data"))[-1]
        assert bar["data"]["text/plain"].startswith("EVALUATE USING m |")
        assert "100%" in bar["data"]["text/plain"]
        # the stop button ends a long one (50,000 rows, every row a query: hundreds of
        # billions of multiply-adds), and its bar says so
        assert kernel.execute(
            "CREATE TABLE many AS SELECT imgs.* FROM imgs, (WITH RECURSIVE n(i) AS (SELECT 1 "
            "UNION ALL SELECT i + 1 FROM n WHERE i < 2084) SELECT i FROM n) AS copies"
        ).status == "ok"

        def scanning(msg: dict) -> bool:   # its bar is on the neighbours: images all read
            text = msg["content"].get("data", {}).get("text/plain", "")
            return text.startswith("EVALUATE USING m |") and "neighbours by" in text

        reply = kernel.execute("EVALUATE USING m OPTIONS (queries=None) AS SELECT * FROM many",
                               timeout=300, interrupt_on=scanning)
        assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt"
        bar = (reply.of("display_data") + reply.of("update_display_data"))[-1]
        assert "stopped at" in bar["data"]["text/plain"], bar["data"]["text/plain"]
        assert kernel.execute("SELECT COUNT(*) AS n FROM many").texts[-1].split()[-1] == \
            "50016"
    finally:
        kernel.close()


def test_drop_model_takes_its_embedding_columns_with_it(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs; CONVERT USING m AS SELECT * FROM other")
    with searchable.services.store.begin() as conn:
        collections = [e.collection for e in searchable.services.catalog.entries(conn)]
    assert len(collections) == 2
    result = searchable.one("DROP MODEL m")
    assert result.text == ("Success: deleted the model m and the embedding columns it made: "
                           "imgs.m_simclr, other.m_simclr")
    assert searchable.one("SELECT * FROM imgs LIMIT 1").columns == ("image_path", "label")
    with searchable.services.store.begin() as conn:
        assert searchable.services.catalog.entries(conn) == []
    assert not any(searchable.services.catalog.index.exists(c) for c in collections)
    # a new model of that name converts into a column of that name again
    searchable.run(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    assert searchable.one("CONVERT USING m AS SELECT * FROM imgs").columns[-1] == "m_simclr"


def test_sql_drops_a_converted_column_or_its_table_and_the_catalog_follows(
        searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs; CONVERT USING m AS SELECT * FROM other")
    catalog = searchable.services.catalog
    with searchable.services.store.begin() as conn:
        collections = {e.table_name: e.collection for e in catalog.entries(conn)}
    # the kernel's index on the column's missing rows no longer stands in the way
    searchable.run("ALTER TABLE imgs DROP COLUMN m_simclr")
    assert searchable.one("SELECT * FROM imgs LIMIT 1").columns == ("image_path", "label")
    searchable.run("DROP TABLE other")
    with searchable.services.store.begin() as conn:
        assert catalog.entries(conn) == []
    assert not any(catalog.index.exists(c) for c in collections.values())
    search = (f"SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING m AS "
              f"SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 1")
    assert searchable.one(search).rows == (("imgs/3.png",),)   # embedding the rows itself
    # converted again, searched again; a statement that fails leaves column and entry be
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    with pytest.raises(DatabaseError, match="no_such_column"):
        searchable.one("ALTER TABLE imgs DROP COLUMN no_such_column")
    searchable.run("ALTER TABLE imgs ADD COLUMN note TEXT; ALTER TABLE imgs DROP COLUMN note")
    with searchable.services.store.begin() as conn:
        assert [e.table_name for e in catalog.entries(conn)] == ["imgs"]
    assert searchable.one(search).rows == (("imgs/3.png",),)
    # renamed away: the column is no longer the model's, and says so
    searchable.run("ALTER TABLE imgs RENAME COLUMN m_simclr TO kept")
    with searchable.services.store.begin() as conn:
        assert catalog.entries(conn) == []
    assert "kept" in searchable.one("SELECT * FROM imgs LIMIT 1").columns


@pytest.mark.parametrize("name", ["m_simclr_similarity1", "x_similarity12", "search_result",
                                  "search_result2", "rowid", "OID", "ctid", "_rowid_"])
def test_convert_refuses_a_column_name_that_search_or_the_database_takes(
        searchable: Engine, name: str) -> None:
    with pytest.raises(OptionError, match="result_col"):
        searchable.one(f"CONVERT USING m OPTIONS (result_col='{name}') AS SELECT * FROM imgs")
    assert searchable.one("SELECT * FROM imgs LIMIT 1").columns == ("image_path", "label")


def test_a_query_image_changed_on_disk_is_embedded_again(searchable: Engine) -> None:
    """The kernel remembers a query image's embedding, by the file as it is: written over
    with another picture, the image is searched as the new picture."""
    import shutil

    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    query = searchable.cwd / "query.png"
    search = (f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='query.png' USING m AS "
              f"SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 3")
    shutil.copy(searchable.cwd / "imgs/3.png", query)
    before = searchable.one(search)
    again = searchable.one(search)
    assert isinstance(before, Table) and isinstance(again, Table)
    assert before.rows == again.rows and before.rows[0][0] == "imgs/3.png"
    shutil.copy(searchable.cwd / "imgs/7.png", query)
    after = searchable.one(search)
    assert isinstance(after, Table) and after.rows[0][0] == "imgs/7.png"
    expected = exact_ranking(searchable, "query.png")[:3]
    assert [r[0] for r in after.rows] == [p for p, _ in expected]
    assert np.allclose([r[1] for r in after.rows], [s for _, s in expected], atol=1e-6)


def _column_of(engine: Engine, table: str, vectors: np.ndarray) -> None:
    """``table`` with one row per vector, recorded as CONVERT records an embedding column
    of the model m (its vector index left empty: the exact path never reads it)."""
    import sqlalchemy as sa

    from thanosql_kernel.storage import EmbeddingColumn, EmbeddingColumns
    from thanosql_kernel.vectors import to_blob

    services = engine.services
    t = sa.Table(table, sa.MetaData(), sa.Column("image_path", sa.Text),
                 sa.Column("n", sa.Integer), sa.Column("m_simclr", sa.LargeBinary))
    services.catalog.ensure()
    _, entry = services.loader.load("m")
    with services.store.begin(write=True) as conn:
        t.create(conn)
        conn.execute(t.insert(), [{"image_path": f"v/{i}.png", "n": i, "m_simclr": to_blob(v)}
                                  for i, v in enumerate(vectors)])
        services.catalog.prepare(conn, table, "m_simclr", "image_path")
        EmbeddingColumns(services.store).put(conn, EmbeddingColumn(
            table, "m_simclr", "m", "image_path", vectors.shape[1], f"{table}__m_simclr",
            len(vectors), entry.digest))


def test_exact_search_of_a_large_column_is_brute_force_with_its_ties(
        searchable: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the engine, on a column of 30,000 vectors with runs of equal ones: the top k
    and their similarities are float64 brute force's over the column, ties in image-path
    order; the first search shows the loading of the compact copy."""
    from thanosql_kernel.engine import search as search_module
    from thanosql_kernel.models import embed, load_images
    from thanosql_kernel.vectors import cosine_scores

    model, _ = searchable.services.loader.load("m")
    q = embed(model, load_images([str(searchable.cwd / "imgs/5.png")], 12, 1))[0]
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((30_000, 128)).astype(np.float32)
    # rows near the query, and runs of the same vector (ties, at the cut too)
    vectors[:300] = q + rng.standard_normal((300, 128)).astype(np.float32) * 0.05
    vectors[300:340] = vectors[7]
    vectors[340:360] = vectors[11] * 3.0
    _column_of(searchable, "big", vectors)
    monkeypatch.setattr(search_module._LoadingBar, "_QUIET_S", 0.0)
    scores = cosine_scores(vectors, q)
    for k in (1, 10, 50, 200):
        result = searchable.one(
            f"SEARCH IMAGE USING m OPTIONS (search_by='image', search_input='imgs/5.png', "
            f"top_k={k}) AS SELECT * FROM big")
        assert isinstance(result, Table)
        expected = sorted(range(len(vectors)), key=lambda i: (-scores[i], f"v/{i}.png"))[:k]
        assert [r[0] for r in result.rows] == [f"v/{i}.png" for i in expected]
        # the engine embeds the query on one thread, this test on any: the last digits differ
        assert np.allclose([r[-1] for r in result.rows], [scores[i] for i in expected],
                           rtol=0, atol=1e-6)
    loading = [p for p in searchable.progress if p.title.startswith("SEARCH IMAGE: loading")]
    assert loading and loading[-1].finished and loading[-1].done == 30_000
    assert len({p.key for p in loading}) == 1   # loaded once, for the first search only


def test_a_restarted_kernel_reads_the_stored_compact_copy_while_it_matches_the_column(
        searchable: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first search stores the column's compact copy in the workspace; a kernel started
    again answers from that file without reading the column, the same rows and numbers;
    a file that no longer matches the column (a vector changed by SQL), is cut short, or
    cannot be written is never used and never breaks a search; dropping the column removes
    it."""
    import sqlalchemy as sa

    from thanosql_kernel.engine import search as search_module
    from thanosql_kernel.models import embed, load_images
    from thanosql_kernel.storage import EmbeddingColumns
    from thanosql_kernel.vectors import cosine_scores, stored, to_blob

    model, _ = searchable.services.loader.load("m")
    q = embed(model, load_images([str(searchable.cwd / "imgs/5.png")], 12, 1))[0]
    rng = np.random.default_rng(6)
    vectors = rng.standard_normal((5_000, 128)).astype(np.float32)
    vectors[100:120] = vectors[3]   # ties
    _column_of(searchable, "big", vectors)
    cell = ("SEARCH IMAGE USING m OPTIONS (search_by='image', search_input='imgs/5.png', "
            "top_k=25) AS SELECT * FROM big")
    folder = searchable.services.settings.workspace / "cache" / "search"

    def answer() -> list[tuple[str, float]]:
        result = searchable.one(cell)
        assert isinstance(result, Table)
        return [(r[0], r[-1]) for r in result.rows]

    def expected() -> list[tuple[str, float]]:
        scores = cosine_scores(vectors, q)
        best = sorted(range(len(vectors)), key=lambda i: (-scores[i], f"v/{i}.png"))[:25]
        return [(f"v/{i}.png", float(scores[i])) for i in best]

    def same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
        assert [p for p, _ in got] == [p for p, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-6)

    first = answer()
    same(first, expected())
    files = sorted(folder.glob("*.compact"))
    assert len(files) == 1 and files[0].stat().st_size > 5_000 * 128

    reads: list[str] = []
    chunks = EmbeddingColumns.vector_chunks

    def counted(self: Any, conn: Any, entry: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(entry.table_name)
        return chunks(self, conn, entry, *args, **kwargs)

    monkeypatch.setattr(EmbeddingColumns, "vector_chunks", counted)
    monkeypatch.setattr(search_module._LoadingBar, "_QUIET_S", 0.0)
    searchable.reopen()
    searchable.progress.clear()
    assert answer() == first and reads == []   # from the file, the column not read
    loading = [p for p in searchable.progress if p.title.startswith("SEARCH IMAGE: loading")]
    assert loading and loading[-1].finished and loading[-1].done == 5_000

    # a vector changed by SQL, one the check looks at (the first row): the file is not used
    vectors[0] = q * 2.0
    with searchable.services.store.begin(write=True) as conn:
        conn.execute(sa.text("UPDATE big SET m_simclr = :v WHERE image_path = 'v/0.png'"),
                     {"v": to_blob(vectors[0])})
    searchable.reopen()
    changed = answer()
    assert reads == ["big"] and changed[0][0] == "v/0.png"
    same(changed, expected())
    assert len(list(folder.glob("*.compact"))) == 1   # made again, in place of the old one

    # a file cut short is ignored and made again
    (file,) = folder.glob("*.compact")
    file.write_bytes(file.read_bytes()[:-100])
    searchable.reopen()
    same(answer(), expected())
    assert reads == ["big", "big"] and file.stat().st_size > 5_000 * 128

    # a file that cannot be written (a full disk) leaves nothing behind, and the search answers
    file.unlink()

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stored.os, "replace", full)
    searchable.reopen()
    same(answer(), expected())
    assert list(folder.iterdir()) == []
    monkeypatch.undo()

    searchable.reopen()
    answer()
    assert len(list(folder.glob("*.compact"))) == 1
    searchable.run("ALTER TABLE big DROP COLUMN m_simclr")
    assert list(folder.glob("*.compact")) == []


@pytest.mark.parametrize("race", ["rounds", "every kept row"])
def test_a_filtered_search_is_brute_force_over_the_rows_kept(
        searchable: Engine, monkeypatch: pytest.MonkeyPatch, race: str) -> None:
    """WHERE keeps some rows of a large column: the answer is the top k of those rows, never
    short, from the compact copy while the best rows hold k kept ones, from every kept row
    below (ties at the cut, and no row kept, included); whichever of the
    two ways wins the race (forced here: the read of every kept row given no time after a
    round, or all the time it needs)."""
    from thanosql_kernel.engine import search as search_module
    from thanosql_kernel.models import embed, load_images
    from thanosql_kernel.vectors import cosine_scores

    monkeypatch.setattr(search_module, "_KEPT_RACE", 0.0 if race == "rounds" else 1e9)
    # the read scores 100 rows at a time, keeping the best (5,000 tied rows below included)
    monkeypatch.setattr(search_module, "_KEPT_SCORED", 100)
    reads: list[float | None] = []
    read_for = search_module._KeptRows.read_for

    def timed(self: object, seconds: float | None) -> bool:
        reads.append(seconds)
        return read_for(self, seconds)  # type: ignore[arg-type]

    monkeypatch.setattr(search_module._KeptRows, "read_for", timed)

    answered: list[bool] = []
    kept_search = search_module._search_kept

    def recorded(*args: object, **kwargs: object) -> Table | None:
        result = kept_search(*args, **kwargs)  # type: ignore[arg-type]
        answered.append(result is not None)
        return result

    monkeypatch.setattr(search_module, "_search_kept", recorded)

    model, _ = searchable.services.loader.load("m")
    q = embed(model, load_images([str(searchable.cwd / "imgs/5.png")], 12, 1))[0]
    rng = np.random.default_rng(8)
    vectors = rng.standard_normal((20_000, 128)).astype(np.float32)
    # rows the 0.1 % filter keeps that tie across its 10th place: its 8th best row's vector
    # copied to 4 of its worst (ranks 8 to 12 then tie; the cut takes them in path order)
    ranked = sorted(range(0, 20_000, 1000), key=lambda i: -cosine_scores(vectors[i:i + 1], q)[0])
    vectors[ranked[-4:]] = vectors[ranked[7]]
    # a quarter of the rows (n % 4 = 1, none of the others' kept rows) one vector, the worst
    vectors[1::4] = -q
    _column_of(searchable, "big", vectors)
    scores = cosine_scores(vectors, q)
    for keep in (20, 1000, 10_000):   # 0.1 %, 5 % and half of the rows
        result = searchable.one(
            f"SEARCH IMAGE USING m OPTIONS (search_by='image', search_input='imgs/5.png', "
            f"top_k=10) AS SELECT * FROM big WHERE n % {20_000 // keep} = 0")
        assert isinstance(result, Table)
        assert result.columns == ("image_path", "n", "m_simclr", "search_result")
        kept = [i for i in range(len(vectors)) if i % (20_000 // keep) == 0]
        expected = sorted(kept, key=lambda i: (-scores[i], f"v/{i}.png"))[:10]
        assert [r[0] for r in result.rows] == [f"v/{i}.png" for i in expected]
        assert [r[1] for r in result.rows] == expected   # whole rows
        assert np.allclose([r[-1] for r in result.rows], scores[expected], rtol=0, atol=1e-6)
        if keep == 20:   # the tie straddles the cut: 3 of its 5 rows are in the top 10
            assert sum(scores[i] == scores[ranked[7]] for i in expected) == 3
    # a WHERE that keeps no row: no rows, the query's columns
    none = searchable.one("SEARCH IMAGE USING m OPTIONS (search_by='image', "
                          "search_input='imgs/5.png', top_k=10) AS SELECT * FROM big "
                          "WHERE n < 0")
    assert isinstance(none, Table) and none.rows == ()
    assert none.columns == ("image_path", "n", "m_simclr", "search_result")
    # 5,000 kept rows tie for the top 10: the first 10 of them by image path
    tied = searchable.one("SEARCH IMAGE USING m OPTIONS (search_by='image', "
                          "search_input='imgs/5.png', top_k=10) AS SELECT * FROM big "
                          "WHERE n % 4 = 1")
    assert isinstance(tied, Table) and len(tied.rows) == 10
    assert [r[0] for r in tied.rows] == sorted(f"v/{i}.png" for i in range(1, 20_000, 4))[:10]
    assert np.allclose([r[-1] for r in tied.rows], -1.0, rtol=0, atol=1e-6)
    # every one from the compact copy: by its rounds, or by reading every kept row
    assert answered == [True] * 5
    if race == "rounds":   # the read had no time but after the last round: to the end
        assert None in reads and all(s in (0.0, None) for s in reads)
    else:   # all the time it needs after the first round that was not enough
        assert None not in reads and reads and all(s and s > 1e3 for s in reads)


def test_a_filter_an_index_counts_reads_its_few_rows_without_the_scan(
        searchable: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WHERE the database answers from an index alone, keeping few rows: they are counted
    by the index, read and scored, with no scan of the compact copy and no round; one that
    keeps many, or that needs the table to be tested, goes the scan's way. Every answer is
    the top k of the rows kept (ties, no row kept, included)."""
    from thanosql_kernel.engine import search as search_module
    from thanosql_kernel.models import embed, load_images
    from thanosql_kernel.vectors import cosine_scores

    scans: list[str] = []
    best_first = type(searchable.services.catalog).best_first

    def recorded(self: object, tx: object, entry: Any, *args: Any, **kwargs: Any) -> Any:
        scans.append(entry.column_name)
        return best_first(self, tx, entry, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(type(searchable.services.catalog), "best_first", recorded)
    model, _ = searchable.services.loader.load("m")
    q = embed(model, load_images([str(searchable.cwd / "imgs/5.png")], 12, 1))[0]
    vectors = np.random.default_rng(9).standard_normal((20_000, 128)).astype(np.float32)
    # among the 300 rows n < 300: 5 equal vectors across the 10th place
    ranked = sorted(range(300), key=lambda i: -cosine_scores(vectors[i:i + 1], q)[0])
    vectors[ranked[-4:]] = vectors[ranked[7]]
    _column_of(searchable, "big", vectors)
    searchable.run("CREATE INDEX big_n ON big (n)")
    sqlite = searchable.services.store.dialect == "sqlite"
    if not sqlite:   # PostgreSQL plans by its statistics: with none, it scans the table
        searchable.run("ANALYZE big")
    scores = cosine_scores(vectors, q)
    # at 20,000 rows and k = 10 up to this many kept rows are read without the scan
    assert search_module._fewest_for_rounds(20_000, 10) == 652

    def search(where: str, kept: list[int], scanned: bool | None) -> None:
        scans.clear()
        result = searchable.one(
            f"SEARCH IMAGE USING m OPTIONS (search_by='image', search_input='imgs/5.png', "
            f"top_k=10) AS SELECT * FROM big WHERE {where}")
        assert isinstance(result, Table)
        assert result.columns == ("image_path", "n", "m_simclr", "search_result")
        expected = sorted(kept, key=lambda i: (-scores[i], f"v/{i}.png"))[:10]
        assert [r[1] for r in result.rows] == expected, where
        assert np.allclose([r[-1] for r in result.rows], scores[expected], rtol=0, atol=1e-6)
        if scanned is not None:
            assert scans == (["m_simclr"] if scanned else []), where

    search("n < 300", list(range(300)), scanned=False)
    assert sum(scores[i] == scores[ranked[7]] for i in range(300)) == 5
    # PostgreSQL reads the table for an OR of two ranges (a bitmap heap scan): either way
    search("n >= 19990 OR n < 5", [*range(5), *range(19_990, 20_000)],
           scanned=False if sqlite else None)
    search("n < 0", [], scanned=False)
    search("n BETWEEN 100 AND 5099", list(range(100, 5100)), scanned=True)   # many
    # the table's own rows needed to test the WHERE: not counted, the scan's way
    search("n < 300 AND image_path LIKE 'v/%'", list(range(300)), scanned=True)
    search("n % 100 = 0", list(range(0, 20_000, 100)), scanned=True)   # no index for it


def test_only_plans_that_search_covering_indexes_are_counted() -> None:
    """The plans the kernel reads before counting a query's rows (SQLite's, in the words of
    3.24 to 3.35 and of 3.36 on, and PostgreSQL's)."""
    from thanosql_kernel.storage.sql import (
        _postgresql_counts_by_index,
        _sqlite_counts_by_index,
    )

    covered = ["CO-ROUTINE thanosql_few", "SEARCH t USING COVERING INDEX t_n (n<?)",
               "SCAN thanosql_few"]
    assert _sqlite_counts_by_index(covered)
    assert _sqlite_counts_by_index(["CO-ROUTINE SUBQUERY 1", "SEARCH TABLE t USING COVERING "
                                    "INDEX t_n (n=?)", "SCAN SUBQUERY 1"])
    assert _sqlite_counts_by_index([*covered[:2], "SCALAR SUBQUERY 1",
                                    "SEARCH t USING COVERING INDEX t_n", covered[2]])
    for read in ("SEARCH t USING INDEX t_n (n=?)", "SCAN t", "SCAN TABLE t",
                 "SCAN t USING COVERING INDEX t_n", "SEARCH t USING INTEGER PRIMARY KEY "
                 "(rowid<?)", "SCAN other"):
        assert not _sqlite_counts_by_index([covered[0], read, covered[2]]), read
    assert not _sqlite_counts_by_index(["CO-ROUTINE thanosql_few", "SCAN thanosql_few"])

    def plan(*kinds: str) -> dict[str, Any]:
        node: dict[str, Any] = {"Node Type": kinds[-1]}
        for kind in reversed(kinds[:-1]):
            node = {"Node Type": kind, "Plans": [node]}
        return node

    assert _postgresql_counts_by_index(plan("Aggregate", "Limit", "Index Only Scan"))
    assert _postgresql_counts_by_index(plan("Aggregate", "Subquery Scan", "Index Only Scan"))
    for read in ("Seq Scan", "Index Scan", "Bitmap Heap Scan", "Parallel Seq Scan"):
        assert not _postgresql_counts_by_index(plan("Aggregate", "Limit", read)), read
    both = {"Node Type": "Append", "Plans": [plan("Index Only Scan"), plan("Seq Scan")]}
    assert not _postgresql_counts_by_index(both)


def test_a_table_travels_to_a_kernel_in_another_folder(tmp_path: Path) -> None:
    """Alice loads a CSV of relative paths in her folder; Bob, in his, converts, searches and
    prints her table: its paths are read where she loaded it, then in his own folder."""
    from thanosql_kernel.engine import Services
    from thanosql_kernel.settings import Settings

    from .conftest import server_env

    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    make_images(alice_dir / "imgs", count=24)
    bob_dir.mkdir()
    # Bob has a folder imgs/ of his own, with an image of the same name as one of hers
    (bob_dir / "imgs").mkdir()
    Image.new("L", (12, 12), 128).save(bob_dir / "imgs" / "0.png")
    with server_env() as env:
        shared = {**env, "THANOSQL_WORKSPACE": str(tmp_path / "shared")}
        alice = Engine(Services.open(Settings.from_env(cwd=alice_dir, env=shared)), alice_dir)
        bob = Engine(Services.open(Settings.from_env(cwd=bob_dir, env=shared)), bob_dir)
        try:
            _travel(alice, bob)
        finally:
            alice.services.close()
            bob.services.close()


def _travel(alice: Engine, bob: Engine) -> None:
    alice.run("COPY imgs FROM 'imgs.csv'")
    alice.run(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    top = (f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='imgs/0.png' USING m AS "
           f"SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 3")
    unconverted = alice.one(top)
    assert isinstance(unconverted, Table) and unconverted.rows[0][0] == "imgs/0.png"

    converted = bob.one("CONVERT USING m AS SELECT * FROM imgs")
    assert isinstance(converted, Table)
    # the vectors are those of her images (Bob's own imgs/0.png is a grey square)
    after = alice.one(top).rows
    assert [p for p, _ in after] == [p for p, _ in unconverted.rows]
    assert [s for _, s in after] == pytest.approx([s for _, s in unconverted.rows], abs=1e-5)
    # a path Bob types is his own first: his grey square
    from thanosql_kernel.models import embed, load_images

    model, _ = bob.services.loader.load("m")
    grey, hers = embed(model, load_images([str(bob.cwd / "imgs" / "0.png"),
                                           str(alice.cwd / "imgs" / "0.png")], 12, 1))
    expected = float(grey @ hers / (np.linalg.norm(grey) * np.linalg.norm(hers)))
    ranked = bob.one(top.replace("LIMIT 3", "LIMIT 24"))
    [(_, similarity)] = [r for r in ranked.rows if r[0] == "imgs/0.png"]
    assert similarity == pytest.approx(expected, abs=1e-5)
    shown = bob.one("PRINT IMAGE AS SELECT * FROM imgs WHERE label = 0")
    assert isinstance(shown, Images) and shown.images and \
        all(i.problem is None for i in shown.images)

    # a table made from hers by SQL, then renamed, keeps where its images are
    bob.run("CREATE TABLE zeros AS SELECT * FROM imgs WHERE label = 0; "
            "ALTER TABLE zeros RENAME TO noughts")
    shown = bob.one("PRINT IMAGE AS SELECT * FROM noughts")
    assert shown.images and all(i.problem is None for i in shown.images)
    folders = bob.services.folders
    with bob.services.store.begin() as conn:
        assert folders.of(conn, ["noughts"]) == (str(alice.cwd),)
        assert folders.of(conn, ["zeros"]) == ()
    bob.run("DROP TABLE noughts")
    with bob.services.store.begin() as conn:
        assert folders.of(conn, ["noughts"]) == ()

    # rows Bob appends from his folder are read there, hers still in hers
    (bob.cwd / "mine.csv").write_text("image_path,label\nimgs/0.png,9\n")
    bob.run("COPY imgs OPTIONS (if_exists='append') FROM 'mine.csv'")
    with bob.services.store.begin() as conn:
        assert folders.of(conn, ["imgs"]) == (str(alice.cwd), str(bob.cwd))
    [nine] = alice.one("PRINT IMAGE AS SELECT * FROM imgs WHERE label = 9").images
    assert nine.problem is None   # her own imgs/0.png, found first: a file of that name
    bob.run("DELETE FROM imgs WHERE label = 9")

    # a file neither folder has: the error names both places, and nothing changes
    before = bob.rows("SELECT image_path, m_simclr FROM imgs ORDER BY image_path")
    five = alice.cwd / "imgs" / "5.png"
    kept = five.read_bytes()
    five.unlink()
    with pytest.raises(NotFoundError) as caught:
        bob.run("CONVERT USING m AS SELECT * FROM imgs")
    message = str(caught.value)
    assert "imgs/5.png" in message and str(alice.cwd) in message and str(bob.cwd) in message
    assert bob.rows("SELECT image_path, m_simclr FROM imgs ORDER BY image_path") == before
    [gone] = bob.one("PRINT IMAGE AS SELECT * FROM imgs WHERE image_path = 'imgs/5.png'").images
    assert gone.problem is not None and str(alice.cwd) in gone.problem
    with pytest.raises(NotFoundError) as caught:
        bob.run("SEARCH IMAGE images='imgs/5.png' USING m AS SELECT * FROM imgs")
    assert str(alice.cwd) in str(caught.value) and str(bob.cwd) in str(caught.value)
    five.write_bytes(kept)

    # a table from before folders were recorded is read from each kernel's own folder
    alice.run("COPY old FROM 'imgs.csv'")
    with alice.services.store.begin(write=True) as conn:
        alice.services.folders.forget(conn, "old")
    assert isinstance(alice.one("CONVERT USING m AS SELECT * FROM old"), Table)
    with pytest.raises(NotFoundError) as caught:
        bob.run("CONVERT USING m AS SELECT * FROM old")
    said = str(caught.value)
    assert f"; relative paths are read from this notebook's folder ({bob.cwd})" in said
    assert str(alice.cwd) not in said


def test_print_embedding_maps_the_converted_column_coloured_by_a_column(
        searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    result = searchable.one("PRINT EMBEDDING USING m OPTIONS (color_col='label', width=600) "
                            "AS SELECT * FROM imgs")
    assert isinstance(result, Images) and len(result.images) == 1
    [picture] = result.images
    opened = Image.open(io.BytesIO(picture.png))
    assert opened.format == "PNG" and opened.size == (picture.width, picture.height) == (
        600, 432)
    # the figures it states are PCA's of the stored column, computed here with numpy's SVD
    from thanosql_kernel.vectors import from_blob

    vectors = np.stack([from_blob(v) for (v,) in searchable.rows("SELECT m_simclr FROM imgs")])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    s = np.linalg.svd(unit - unit.mean(axis=0), compute_uv=False) ** 2
    stated, thumbnails = picture.caption.rsplit(", ", 1)
    said = re.fullmatch(r"PRINT EMBEDDING: 24 rows of imgs\.m_simclr on their first two "
                        r"principal axes \(PCA; (\d+)% and (\d+)% of the spread\), coloured "
                        r"by label", stated)
    assert said, stated
    for percent, share in zip(said.groups(), (s / s.sum())[:2], strict=True):
        assert abs(int(percent) - 100 * share) <= 0.5 + 1e-6   # rounded to a whole percent
    # as many thumbnails as the spread leaves room for, one a grid cell
    assert thumbnails.endswith(" thumbnails") and 1 <= int(thumbnails.split()[0]) <= 24
    # each label's colour is on the picture; without color_col, one colour and no legend
    from thanosql_kernel.engine.map_drawing import PALETTE

    pixels = {tuple(p) for p in np.asarray(opened.convert("RGB")).reshape(-1, 3).tolist()}
    labels = {label for (label,) in searchable.rows("SELECT DISTINCT label FROM imgs")}
    assert {PALETTE[i] for i in range(len(labels))} <= pixels
    plain = searchable.one("PRINT EMBEDDING USING m OPTIONS (thumbnails=0) AS "
                           "SELECT image_path FROM imgs WHERE label = 0")
    assert plain.images[0].caption.endswith("spread), 0 thumbnails")


def test_print_embedding_of_rows_not_converted_embeds_their_images(searchable: Engine) -> None:
    # the table 'other' has no column: its images are embedded as SEARCH embeds them
    result = searchable.one("PRINT EMBEDDING USING m AS SELECT * FROM other")
    assert "24 rows of other.m_simclr" in result.images[0].caption


@pytest.mark.parametrize(("cell", "error", "words"), [
    ("PRINT EMBEDDING USING m OPTIONS (color_col='lable') AS SELECT * FROM imgs",
     NotFoundError, ["no column 'lable' to colour by", "Did you mean 'label'?"]),
    ("PRINT EMBEDDING USING m OPTIONS (emb_col='label') AS SELECT * FROM imgs",
     DataError, ["the column 'label' holds no embeddings"]),
    ("PRINT EMBEDDING USING m AS SELECT * FROM imgs LIMIT 1",
     DataError, ["returned 1 row(s); a map needs at least 2"]),
    ("PRINT EMBEDDING USING m AS SELECT label FROM imgs",
     NotFoundError, ["neither an embedding column 'm_simclr' nor an image column"]),
    ("PRINT EMBEDDING USING nosuch AS SELECT * FROM imgs", NotFoundError, ["nosuch"]),
    ("PRINT EMBEDDING USING m OPTIONS (width=10) AS SELECT * FROM imgs",
     OptionError, ["width", "from 400 to 4096"]),
])
def test_bad_maps_get_one_clean_error(searchable: Engine, cell: str, error: type,
                                      words: list[str]) -> None:
    with pytest.raises(error) as caught:
        searchable.run(cell)
    for word in words:
        assert word in str(caught.value)


def hand_table(engine: Engine, name: str, rows: list[tuple[str | None, str | None, Any]]
               ) -> None:
    """A table (image_path, label, m_simclr) written directly: vectors chosen by hand."""
    import sqlalchemy as sa

    from thanosql_kernel.vectors import to_blob

    table = sa.Table(name, sa.MetaData(), sa.Column("image_path", sa.Text),
                     sa.Column("label", sa.Text), sa.Column("m_simclr", sa.LargeBinary))
    with engine.services.store.begin(write=True) as conn:
        table.create(conn)
        conn.execute(table.insert(), [
            {"image_path": p, "label": label,
             "m_simclr": None if v is None else to_blob(np.asarray(v, np.float32))}
            for p, label, v in rows])


def independent_precision(vectors: np.ndarray, labels: list[Any], k: int) -> float:
    v = vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    lab = np.asarray(labels)
    return float((lab[nearest] == lab[:, None]).mean())


def test_evaluate_scores_hand_made_vectors_as_worked_out_by_hand(searchable: Engine) -> None:
    def vector(*head: float) -> list[float]:
        return list(head) + [0.0] * (128 - len(head))

    # two pairs: each row's nearest other is its pair; its second the other label's row
    hand_table(searchable, "hand", [
        ("imgs/0.png", "x", vector(10, 1, 0)), ("imgs/1.png", "x", vector(10, 0, 1)),
        ("imgs/2.png", "y", vector(0, 10, 1)), ("imgs/3.png", "y", vector(1, 10, 0)),
        ("imgs/4.png", None, vector(5, 5, 5)),          # no label: left out, counted
        ("missing.png", "y", vector(0, 0, 9)),          # no image: left out, counted
    ])
    result = searchable.one("EVALUATE USING m OPTIONS (k=1) AS SELECT * FROM hand")
    assert isinstance(result, Table)
    assert result.columns == ("method", "k", "rows", "queries", "labels", "skipped",
                              "precision_at_k", "knn_accuracy", "mrr_at_k", "chance_precision")
    model = dict(zip(result.columns, result.rows[0], strict=True))
    assert model == {"method": "m", "k": 1, "rows": 4, "queries": 4, "labels": 2,
                     "skipped": 2, "precision_at_k": 1.0, "knn_accuracy": 1.0,
                     "mrr_at_k": 1.0, "chance_precision": pytest.approx(4 / 12)}
    two = searchable.one("EVALUATE USING m OPTIONS (k=2) AS SELECT * FROM hand")
    model = dict(zip(two.columns, two.rows[0], strict=True))
    # k=2: one of each label; the vote's tie goes to the nearer, the row's own label
    assert (model["precision_at_k"], model["knn_accuracy"], model["mrr_at_k"]) == (
        0.5, 1.0, 1.0)
    # raw pixels: the same measure on the images as the model sees them (12 x 12 grey)
    raw = dict(zip(two.columns, two.rows[1], strict=True))
    pixels = np.stack([np.asarray(Image.open(searchable.cwd / f"imgs/{i}.png").convert("L"),
                                  np.float64).ravel() for i in range(4)])
    assert raw["method"] == "raw_pixels" and raw["rows"] == 4
    assert raw["precision_at_k"] == independent_precision(pixels, ["x", "x", "y", "y"], 2)


def test_evaluate_reads_the_converted_column_and_agrees_with_it(searchable: Engine) -> None:
    searchable.run("CONVERT USING m AS SELECT * FROM imgs")
    stored = searchable.rows("SELECT label, m_simclr FROM imgs")
    from thanosql_kernel.vectors import from_blob

    vectors = np.stack([from_blob(v) for _, v in stored])
    labels = [label for label, _ in stored]
    result = searchable.one("EVALUATE USING m AS SELECT * FROM imgs")
    [model, raw] = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    assert model["precision_at_k"] == independent_precision(vectors, labels, 4)
    assert model["k"] == 4 and model["rows"] == model["queries"] == 24
    # from the images (no column in 'other'), the model's own embeddings: the same answer
    again = searchable.one("EVALUATE USING m AS SELECT * FROM other")
    assert again.rows[0][6] == pytest.approx(model["precision_at_k"], abs=1 / 24)
    # a sample of the rows as queries, each against every row
    sampled = searchable.one("EVALUATE USING m OPTIONS (queries=6) AS SELECT * FROM imgs")
    assert [r[3] for r in sampled.rows] == [6, 6] and [r[2] for r in sampled.rows] == [24, 24]
    # EVALUATE is a query like SEARCH: SQL can read its rows
    table = searchable.one("SELECT method, precision_at_k FROM (EVALUATE USING m AS SELECT * "
                           "FROM imgs) ORDER BY method")
    assert [r[0] for r in table.rows] == ["m", "raw_pixels"]


@pytest.mark.parametrize(("cell", "error", "words"), [
    ("EVALUATE USING m OPTIONS (label_col='lable') AS SELECT * FROM imgs",
     NotFoundError, ["no label column 'lable'", "Did you mean 'label'?"]),
    ("EVALUATE USING m OPTIONS (k=0) AS SELECT * FROM imgs", OptionError, ["k", "1 or more"]),
    ("EVALUATE USING m OPTIONS (k=24) AS SELECT * FROM imgs",
     OptionError, ["k=24 needs more than 24 rows", "the query has 24", "k=23 or less"]),
    ("EVALUATE USING m AS SELECT * FROM imgs WHERE label = 0",
     DataError, ["every row has the same label"]),
    ("EVALUATE USING m OPTIONS (emb_col='nope') AS SELECT * FROM imgs",
     NotFoundError, ["no column 'nope'"]),
    ("EVALUATE USING m OPTIONS (emb_col='label') AS SELECT * FROM imgs",
     DataError, ["the column 'label' holds no embeddings"]),
    ("EVALUATE USING nosuch AS SELECT * FROM imgs", NotFoundError, ["nosuch"]),
])
def test_bad_evaluations_get_one_clean_error_before_any_work(
        searchable: Engine, cell: str, error: type, words: list[str]) -> None:
    searchable.progress.clear()
    with pytest.raises(error) as caught:
        searchable.run(cell)
    for word in words:
        assert word in str(caught.value)
    assert not searchable.progress   # nothing was read or computed

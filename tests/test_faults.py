"""The fault suite: fuzzed grammar and options, corrupted state, hostile input, stops at random
moments (the first import included) and kill -9 in the middle of CONVERT, BUILD and COPY.

Every case must end in one error of the kernel's own classes (or a right answer), with the
kernel alive and nothing lost. The default run is bounded for ``make test``; ``make faults``
runs the same cases longer (THANOSQL_FAULT_EXAMPLES fuzz examples, THANOSQL_FAULT_ROUNDS
stops and kills).
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thanosql_kernel.engine import STATEMENT_OPTIONS, Services, execute
from thanosql_kernel.errors import (
    DatabaseError,
    DataError,
    NotFoundError,
    OptionError,
    ThanoSQLError,
    ThanoSQLSyntaxError,
)
from thanosql_kernel.options import read_options
from thanosql_kernel.settings import Settings
from thanosql_kernel.syntax import BuildModel, GetDataset, parse

from .conftest import Engine, KernelSession
from .helpers import TINY, make_images

EXAMPLES = int(os.environ.get("THANOSQL_FAULT_EXAMPLES", "300"))
ROUNDS = int(os.environ.get("THANOSQL_FAULT_ROUNDS", "1"))
FIXTURES = Path(__file__).parent / "fixtures" / "identity.sql"
STATEMENTS = [line for line in FIXTURES.read_text().splitlines()
              if line and not line.startswith("--")]
PIECES = ["(", ")", "[", "]", "'", '"', ",", ";", "=", "*", "%%", "--", "/*", "*/", "$$", " ",
          "\n", "\t", "\x00", "한", "AS", "OPTIONS", "SELECT", "USING", "9" * 40, "1e999",
          "None", "True", "[[[[", "]]]]", "(SEARCH IMAGE images='q.jpg' USING m AS SELECT 1)"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A statement of the round-trip fixtures with a few characters or tokens changed."""
    text = draw(st.sampled_from(STATEMENTS))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        at = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=4))
        if op == "insert":
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)):]
        elif op == "replace":
            text = text[:at] + piece + text[at + 1:]
        else:
            text = text[:at] + text[at:at + 12] * draw(st.integers(2, 30)) + text[at + 12:]
    return text


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_mutated_statement_parses_or_is_one_short_syntax_error(text: str) -> None:
    try:
        nodes = parse(text)
    except ThanoSQLSyntaxError as error:
        assert len(str(error)) < 2_000, "an error quotes a short excerpt, not the input"
        return
    for node in nodes:
        assert isinstance(node.to_sql(), str)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """One engine on a small workspace for the execution fuzz (examples share it)."""
    folder = tmp_path_factory.mktemp("fuzz")
    make_images(folder / "imgs", count=8)
    engine = Engine(Services.open(Settings.from_env(cwd=folder, env={})), folder)
    engine.run("COPY t FROM 'imgs.csv'; COPY mnist_train FROM 'imgs.csv'; "
               "COPY mnist_test FROM 'imgs.csv'")
    engine.run(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM t")
    yield engine
    engine.services.close()


@settings(max_examples=max(20, EXAMPLES // 5), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(mutated())
def test_a_mutated_statement_runs_or_is_one_clean_error(workspace: Engine, text: str) -> None:
    """Executed through the engine: a result or a ThanoSQLError, never a Python error."""
    try:
        nodes = parse(text)
    except ThanoSQLSyntaxError:
        return
    for node in nodes:
        if isinstance(node, (BuildModel, GetDataset)):
            continue   # training and writing data sets are not what this fuzzes
        try:
            execute(node, workspace.services)
        except ThanoSQLError as error:
            assert len(str(error)) < 5_000
            return


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() |
    st.text(max_size=12), lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=8)
NAMES = sorted({s.name for specs in STATEMENT_OPTIONS.values() for s in specs})


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(STATEMENT_OPTIONS, key=lambda n: n.__name__)),
       st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8), VALUES, max_size=4))
def test_any_option_values_are_read_or_one_option_error(node: type, given: dict) -> None:
    from thanosql_kernel.models.config import simclr_config

    try:
        values = read_options(given, STATEMENT_OPTIONS[node], node.__name__)
        if node is BuildModel:   # every value that passes makes a config, or one that
            simclr_config(values)   # contradicts another option is an OptionError too
    except OptionError as error:
        assert len(str(error)) < 3_000


# -- corrupted state -----------------------------------------------------------------------

@pytest.fixture
def built(engine: Engine) -> Engine:
    make_images(engine.cwd / "imgs", count=16)
    engine.run("COPY imgs FROM 'imgs.csv'; COPY other FROM 'imgs.csv'")
    engine.run(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    return engine


SEARCH = ("SELECT image_path, m_simclr_similarity1 AS s FROM (SEARCH IMAGE images='imgs/3.png' "
          "USING m AS SELECT * FROM imgs) ORDER BY m_simclr_similarity1 DESC LIMIT 3")


def test_one_unreadable_catalog_row_is_listed_as_damaged_and_breaks_nothing(built: Engine
                                                                            ) -> None:
    built.run(f"BUILD MODEL n USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    with built.services.store.begin(write=True) as tx:
        tx.exec_driver_sql("UPDATE thanosql_models SET card = '{not json' WHERE name = 'n'")
    rows = {r[0]: r[3] for r in built.one("LIST MODEL").rows}
    assert rows["m"] == "ready" and rows["n"].startswith("damaged")
    built.run(f"BUILD MODEL o USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
    assert built.one(SEARCH).rows[0][0] == "imgs/3.png"


def test_a_manifest_that_names_paths_outside_the_cache_is_damaged(built: Engine) -> None:
    bad = json.dumps({"../../escaped.txt": {"size": 1, "sha256": "0" * 64}})
    with built.services.store.begin(write=True) as tx:
        tx.exec_driver_sql("UPDATE thanosql_models SET files = ?", (bad,))
    built.services.loader.forget()
    with pytest.raises(DataError, match="catalog row of the model 'm' is damaged"):
        built.run(SEARCH)
    assert not list(built.cwd.rglob("escaped.txt"))


def _replace_model_file(built: Engine, name: str, data: bytes) -> None:
    """Model m with its file ``name`` replaced by ``data``, the checksums made to match
    (SQLite: the fault suite runs on the embedded defaults)."""
    import hashlib

    from thanosql_kernel.storage.registry import content_digest

    entry = built.services.registry.get("m")
    files = {**entry.files, name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    digest = content_digest(files)
    with built.services.store.begin(write=True) as tx:
        tx.exec_driver_sql("INSERT INTO thanosql_model_files (digest, file, seq, data) "
                           "SELECT ?, file, seq, data FROM thanosql_model_files "
                           "WHERE digest = ? AND file != ?", (digest, entry.digest, name))
        tx.exec_driver_sql("INSERT INTO thanosql_model_files VALUES (?, ?, 0, ?)",
                           (digest, name, data))
        tx.exec_driver_sql("UPDATE thanosql_models SET digest = ?, files = ? WHERE name = 'm'",
                           (digest, json.dumps(files)))
    built.services.loader.forget()


def test_model_files_that_pass_their_checksum_yet_do_not_load(built: Engine) -> None:
    """A consistent but broken model: its description garbled."""
    _replace_model_file(built, "model.json", b'{"format": 2, "architecture": ')
    with pytest.raises(DataError, match="cannot be loaded") as caught:
        built.run(SEARCH)
    assert "BUILD MODEL m" in (caught.value.hint or "")


def test_weights_that_are_a_pickle_are_refused_in_one_line(built: Engine) -> None:
    import pickle

    from thanosql_kernel.models.train import WEIGHTS_FILE

    _replace_model_file(built, WEIGHTS_FILE, pickle.dumps({"encoder": Path("/")}, protocol=2))
    with pytest.raises(DataError, match="cannot be loaded") as caught:
        built.run(SEARCH)
    assert "pickled Python objects" in str(caught.value), caught.value
    assert len(caught.value.message) < 300 and "\n" not in caught.value.message


def test_a_damaged_vector_index_is_rebuilt_from_the_columns(built: Engine) -> None:
    notices: list[str] = []
    built.services = Services.open(built.services.settings, notices.append)
    built.run("CONVERT USING m AS SELECT * FROM imgs; CONVERT USING m AS SELECT * FROM other")
    built.services.close()
    database = built.cwd / ".thanosql" / "chroma" / "chroma.sqlite3"
    data = bytearray(database.read_bytes())
    data[100:4000] = os.urandom(3900)
    database.write_bytes(bytes(data))
    built.run("CONVERT USING m AS SELECT * FROM imgs")   # the index opens damaged: rebuilt
    assert len(notices) == 1 and "rebuilt from 2 embedding columns" in notices[0]
    assert any(p.name.startswith("chroma.damaged-") for p in database.parent.parent.iterdir())
    with built.services.store.begin() as tx:
        made = built.services.catalog.entries(tx)
    assert sorted(built.services.catalog.index.names()) == sorted(e.collection for e in made)
    assert all(built.services.catalog.index.count(e.collection) == 16 for e in made)


def test_a_workspace_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".thanosql").write_text("not a folder")
    services = Services.open(Settings.from_env(cwd=tmp_path, env={}))
    with pytest.raises(DatabaseError, match="workspace folder") as caught:
        execute(parse("SELECT 1")[0], services)
    assert "THANOSQL_WORKSPACE" in (caught.value.hint or "")


def test_search_refuses_vectors_another_model_made(built: Engine) -> None:
    built.run("BUILD MODEL m2 USING SimCLR OPTIONS (max_epochs=2, batch_size=8, seed=9) "
              "AS SELECT * FROM imgs")
    built.run("CONVERT USING m2 OPTIONS (table_name='imgs', result_col='m_simclr') "
              "AS SELECT * FROM imgs")
    with pytest.raises(DataError, match="imgs.m_simclr holds the embeddings of the model 'm2'"):
        built.run(SEARCH)
    assert built.one(SEARCH.replace("USING m ", "USING m2 OPTIONS (emb_col='m_simclr') ")
                     .replace("m_simclr_similarity1", "m2_simclr_similarity1")).rows


def test_search_refuses_vectors_the_model_made_before_it_was_rebuilt(built: Engine) -> None:
    built.run("CONVERT USING m AS SELECT * FROM imgs")
    built.run("BUILD MODEL m USING SimCLR OPTIONS (max_epochs=1, batch_size=8, seed=3, "
              "overwrite=True) AS SELECT * FROM imgs")
    with pytest.raises(DataError, match="as it was before it was built again") as caught:
        built.run(SEARCH)
    assert "CONVERT USING m AS SELECT * FROM imgs" in (caught.value.hint or "")
    # rows that do not bring the column are embedded from their images: no refusal
    fresh = built.one(SEARCH.replace("SELECT * FROM imgs", "SELECT image_path FROM imgs"))
    assert fresh.rows[0][0] == "imgs/3.png"
    built.run("CONVERT USING m AS SELECT * FROM imgs")
    assert built.one(SEARCH).rows[0][0] == "imgs/3.png"


def test_a_column_that_holds_no_embeddings(built: Engine) -> None:
    with pytest.raises(DataError, match="'label' holds no embeddings"):
        built.run("SEARCH IMAGE images='imgs/1.png' USING m OPTIONS (emb_col='label') "
                  "AS SELECT * FROM imgs")


def test_tiny_first_image_still_gives_real_similarities(engine: Engine) -> None:
    from PIL import Image

    make_images(engine.cwd / "imgs", count=8)
    Image.new("L", (1, 1), 200).save(engine.cwd / "imgs" / "dot.png")
    lines = (engine.cwd / "imgs.csv").read_text().splitlines()
    (engine.cwd / "dots.csv").write_text("\n".join([lines[0], "imgs/dot.png,1", *lines[1:]]))
    engine.run("COPY dots FROM 'dots.csv'")
    engine.run("BUILD MODEL d USING SimCLR OPTIONS (max_epochs=1, batch_size=4) "
               "AS SELECT * FROM dots")
    assert engine.services.registry.get("d").card["image_size"] == 8
    result = engine.one("SEARCH IMAGE images='imgs/2.png' USING d AS SELECT * FROM dots")
    assert all(np.isfinite(row[-1]) for row in result.rows)


def test_nan_weights_are_an_error_not_null_similarities(built: Engine) -> None:
    import torch

    from thanosql_kernel.models import load_model, save_model

    model = load_model(built.services.registry.files(built.services.registry.get("m")))
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.fill_(float("nan"))
    built.services.registry.register("nan", base_model="SimCLR", trained_on="SELECT * FROM imgs",
                              row_count=16, card={"name": "nan"},
                              write=lambda folder: save_model(model, folder), overwrite=False)
    with pytest.raises(DataError, match="NaN"):
        built.run("SEARCH IMAGE images='imgs/1.png' USING nan AS SELECT * FROM imgs")


def png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG header that claims a huge image (a decompression bomb), with no pixels after."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b""))


def test_hostile_image_files_are_reported_not_crashed_on(built: Engine) -> None:
    folder = built.cwd / "imgs"
    png_claiming(folder / "bomb.png", 40_000, 40_000)
    os.mkfifo(folder / "pipe.png")
    for name, words in (("bomb.png", "more pixels"), ("pipe.png", "not a regular file")):
        built.run(f"COPY {name[:4]} FROM 'imgs.csv'; "
                  f"INSERT INTO {name[:4]} (image_path, label) VALUES ('imgs/{name}', 0)")
        for cell in (f"CONVERT USING m AS SELECT * FROM {name[:4]}",
                     f"SEARCH IMAGE images='imgs/1.png' USING m AS SELECT * FROM {name[:4]}",
                     f"BUILD MODEL x USING SimCLR OPTIONS (max_epochs=1) "
                     f"AS SELECT * FROM {name[:4]}",
                     f"SEARCH IMAGE images='imgs/{name}' USING m AS SELECT * FROM imgs"):
            with pytest.raises(DataError, match=words):
                built.run(cell)
        shown = built.one(f"PRINT IMAGE AS SELECT * FROM {name[:4]} "
                          f"WHERE image_path = 'imgs/{name}'")
        assert words in shown.images[0].problem
    with pytest.raises(DataError, match="NUL"):
        built.run("SEARCH IMAGE images='imgs/1\x00.png' USING m AS SELECT * FROM imgs")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    with pytest.raises(DataError, match="symbolic links"):
        built.run("SEARCH IMAGE images='imgs/loop.png' USING m AS SELECT * FROM imgs")
    with pytest.raises(NotFoundError) as caught:
        built.run(f"SEARCH IMAGE images='{'a' * 5000}' USING m AS SELECT * FROM imgs")
    assert len(str(caught.value)) < 1_000
    (built.cwd / "bad.xlsx").write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(DataError, match="bad.xlsx"):
        built.run("COPY x FROM 'bad.xlsx'")


def _bad_rows(built: Engine) -> None:
    """Table ``bad``: the 16 images, 3 missing paths, one text file, one truncated PNG."""
    folder = built.cwd / "imgs"
    (folder / "text.png").write_text("not an image at all")
    whole = (folder / "5.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[:len(whole) // 2])
    built.run("COPY bad FROM 'imgs.csv'; INSERT INTO bad (image_path, label) VALUES "
              "('imgs/gone1.png', 0), ('imgs/gone2.png', 0), ('imgs/gone3.png', 0), "
              "('imgs/text.png', 0), ('imgs/cut.png', 0)")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_the_look_before_the_work_tells_whole_images_from_broken_ones(tmp_path: Path,
                                                                     fmt: str) -> None:
    from PIL import Image

    from thanosql_kernel.paths import image_problem

    pixels = (np.random.default_rng(1).random((24, 24, 3)) * 255).astype(np.uint8)
    whole = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(pixels).save(whole, fmt)
    assert image_problem(str(whole)) is None
    if fmt in ("PNG", "JPEG", "GIF"):   # formats with a fixed end: a cut file is found
        cut = tmp_path / f"cut.{fmt.lower()}"
        cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
        assert image_problem(str(cut)).startswith(f"truncated or damaged {fmt}")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.png")
    assert image_problem(str(tmp_path / "text.png")).startswith("not an image")
    assert image_problem(str(tmp_path / "empty.jpg")) == "not an image (the file is empty)"
    assert image_problem(str(tmp_path / "pipe.png")).startswith("not a regular file")
    assert image_problem(str(tmp_path)) == "a directory"
    assert image_problem(str(tmp_path / "gone.png")) == "missing"


def test_unreadable_rows_are_counted_named_and_listed_before_any_work(built: Engine) -> None:
    _bad_rows(built)
    for cell in ("CONVERT USING m AS SELECT * FROM bad",
                 f"BUILD MODEL x USING SimCLR {TINY.format(extra='')} AS SELECT * FROM bad"):
        with pytest.raises(DataError) as caught:
            built.run(cell)
        text = str(caught.value)
        assert "5 of 21 images cannot be read (3 missing, 2 not readable as images)" in text
        assert "'imgs/gone1.png' (missing)" in text and "'imgs/text.png' (not an image" in text
        assert "'imgs/cut.png' (truncated" in text and "on_error='skip'" in text
        listing = Path(text.split("listed in ")[1].rstrip(". \n").split(".csv")[0] + ".csv")
        lines = listing.read_text().splitlines()
        assert lines[:4] == ["image_path,problem"] + [
            f"imgs/{n}.png,missing" for n in ("gone1", "gone2", "gone3")]
        assert lines[4].startswith("imgs/text.png,not an image") and len(lines) == 6
        assert lines[5].startswith("imgs/cut.png,truncated")
    # nothing was made
    assert built.one("SELECT * FROM bad LIMIT 1").columns == ("image_path", "label")
    assert [r[0] for r in built.one("LIST MODEL").rows] == ["m"]
    # all missing: a NotFoundError that says where relative paths are read from
    built.run("CREATE TABLE gone AS SELECT 'imgs/no' || image_path AS image_path FROM bad")
    with pytest.raises(NotFoundError, match="21 of 21 images cannot be read"):
        built.run("CONVERT USING m OPTIONS (on_error='skip') AS SELECT * FROM gone")


def test_on_error_skip_goes_on_without_them_and_search_leaves_them_out(built: Engine) -> None:
    _bad_rows(built)
    built.progress.clear()
    built.run("CONVERT USING m OPTIONS (on_error='skip') AS SELECT * FROM bad")
    assert "5 left out, the image unreadable" in built.progress[-1].detail
    assert built.progress[-1].log_line == ("CONVERT USING m: 16 images into bad.m_simclr; "
                                           "5 left out, the image unreadable")
    shown = built.one("SELECT image_path, m_simclr FROM bad WHERE image_path LIKE '%gone1%'")
    assert shown.rows[0][1] == b""
    from thanosql_kernel.display import table_text

    assert "(unreadable image)" in table_text(shown)
    for query in ("SELECT * FROM bad", "SELECT image_path, m_simclr FROM bad"):   # both paths
        found = built.one(f"SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING m "
                          f"AS {query}) ORDER BY m_simclr_similarity1 DESC LIMIT 30")
        assert len(found.rows) == 16 and found.rows[0] == ("imgs/3.png",)
        assert not any("gone" in p or "text" in p or "cut" in p for (p,) in found.rows)
    second = built.one("SELECT * FROM (SEARCH IMAGE USING m OPTIONS (search_by='image', "
                       "search_input='imgs/3.png', top_k=40) AS SELECT * FROM bad)")
    assert len(second.rows) == 16
    skip = TINY.format(extra=", on_error='skip'")
    message = built.one(f"BUILD MODEL x USING SimCLR {skip} AS SELECT * FROM bad")
    assert "over 16 images" in message.text and "5 rows left out" in message.text


def test_the_kernels_own_tables_are_out_of_reach(built: Engine) -> None:
    (built.cwd / "rows.csv").write_text("name\nx\n")
    before = built.one("LIST MODEL").rows
    for cell in ("COPY thanosql_models OPTIONS (overwrite=True) FROM 'rows.csv'",
                 "DROP TABLE thanosql_models", "DELETE FROM thanosql_model_files",
                 "ALTER TABLE thanosql_models ADD COLUMN x INTEGER",
                 "INSERT INTO thanosql_models (name) VALUES ('x')",
                 "CONVERT USING m OPTIONS (table_name='thanosql_models') AS SELECT * FROM imgs"):
        with pytest.raises(DatabaseError, match="kernel's own tables"):
            built.run(cell)
    assert built.one("LIST MODEL").rows == before
    assert built.one("SELECT COUNT(*) FROM thanosql_models").rows == ((1,),)   # reading is fine


def test_convert_reports_the_real_problem_before_any_work(built: Engine, monkeypatch) -> None:
    import thanosql_kernel.models.train as train

    def never(*args, **kwargs):
        raise AssertionError("images were embedded before the options were checked")

    monkeypatch.setattr(train, "embed", never)
    with pytest.raises(NotFoundError, match="no table 'no such table'"):
        built.run("CONVERT USING m OPTIONS (table_name='no such table') AS SELECT * FROM imgs")
    with pytest.raises(OptionError, match="result_col must be a name"):
        built.run("CONVERT USING m OPTIONS (result_col='my vec') AS SELECT * FROM imgs")


def test_half_written_model_folders_are_swept_and_said(engine: Engine) -> None:
    from thanosql_kernel.storage import ModelRegistry
    from thanosql_kernel.storage.registry import STALE_AFTER_S

    cache = engine.cwd / ".thanosql" / "cache" / "models"
    old, fresh = cache / ".new-m-0badc0de", cache / ".new-m-12345678"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "weights.pt").write_bytes(b"half")
    long_ago = old.stat().st_mtime - STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    notices: list[str] = []
    ModelRegistry(engine.services.store, engine.cwd / ".thanosql", notices.append).entries()
    assert not old.exists() and fresh.exists()   # a BUILD may still be writing the fresh one
    assert notices == ["Removed 1 unfinished model folder that a stopped or killed BUILD "
                       "MODEL left in the workspace."]


def test_huge_input_gets_a_short_error(engine: Engine) -> None:
    values = ", ".join(["1"] * 200_000)
    with pytest.raises(ThanoSQLSyntaxError) as caught:
        parse(f"BUILD MODEL m USING SimCLR OPTIONS (crop_scale=[{values}]) AS SELECT 1")
    assert "at most 20,000" in str(caught.value) and len(str(caught.value)) < 1_000
    with pytest.raises(ThanoSQLSyntaxError, match="nested too deeply"):
        parse("BUILD MODEL m USING SimCLR OPTIONS (crop_scale=" + "[" * 60 + "]" * 60 +
              ") AS SELECT 1")
    with pytest.raises(OptionError) as caught:
        engine.run("PRINT IMAGE OPTIONS (width='" + "x" * 15_000 + "') AS SELECT 1 AS x")
    assert "xxx…" in str(caught.value) and len(str(caught.value)) < 1_000
    assert len(parse("LIST TABLE;" * 40_000)) == 40_000


def test_the_rarer_faults_each_get_a_clean_error(built: Engine) -> None:
    built.run("CONVERT USING m AS SELECT * FROM imgs")
    # a text value written into the embedding column: both SEARCH paths say what is wrong
    built.run("UPDATE imgs SET m_simclr = 'not a vector' WHERE image_path = 'imgs/4.png'")
    for cell in (SEARCH, SEARCH.replace("SELECT * FROM imgs", "SELECT image_path, m_simclr "
                                        "FROM imgs")):
        with pytest.raises(DataError, match="not embeddings|holds no embeddings"):
            built.run(cell)
    built.run("CONVERT USING m AS SELECT * FROM imgs")
    assert built.one(SEARCH).rows[0][0] == "imgs/3.png"
    # 300 parentheses around a sub-query: an answer, or the database's own refusal
    deep = "SELECT * FROM " + "(SELECT * FROM " * 300 + "(SEARCH IMAGE images='imgs/3.png' " \
        "USING m AS SELECT * FROM imgs)" + " AS t)" * 300 + " AS t LIMIT 1"
    try:
        built.run(deep)
    except ThanoSQLError as error:
        assert error.ename in ("DatabaseError", "ThanoSQLSyntaxError"), error
        assert len(str(error)) < 5_000
    # a time in the catalog that is not ISO: listed, searched, never an InternalError
    with built.services.store.begin(write=True) as tx:
        tx.exec_driver_sql("UPDATE thanosql_models SET last_updated_utc = 'last Tuesday'")
        tx.exec_driver_sql("UPDATE thanosql_embeddings SET updated_utc = '31/12/2026'")
    built.reopen()
    listed = built.one("LIST MODEL")
    assert listed.rows[0][0] == "m"
    assert built.one(SEARCH).rows[0][0] == "imgs/3.png"
    # a folder where the index's lock file should be: the index is set aside and rebuilt
    built.services.close()
    from thanosql_kernel.vectors.chroma import LOCK_FILE

    lock = built.cwd / ".thanosql" / "chroma" / LOCK_FILE
    lock.unlink(missing_ok=True)
    lock.mkdir()
    built.reopen()
    for _ in range(2):   # the first use may find it damaged; the next is rebuilt
        try:
            built.run("CONVERT USING m AS SELECT * FROM imgs")
            break
        except DataError as error:
            assert "damaged" in str(error)
    assert built.one(SEARCH).rows[0][0] == "imgs/3.png"
    assert list((built.cwd / ".thanosql").glob("chroma.damaged-*"))


# -- stops and kills, through the real kernel -----------------------------------------------

def _kernel_folder(tmp_path: Path, count: int = 32) -> Path:
    make_images(tmp_path / "imgs", count=count)
    return tmp_path


def _first_build_seconds(folder: Path, build: str) -> float:
    """How long the first BUILD of a fresh kernel takes here: the window in which a stop
    meets the first imports (torch, the model code, torch's compiler) on this machine."""
    kernel = KernelSession(folder)
    try:
        assert kernel.execute("COPY imgs OPTIONS (overwrite=True) FROM 'imgs.csv'").status == "ok"
        started = time.monotonic()
        assert kernel.execute(build, timeout=120).status == "ok"
        return time.monotonic() - started
    finally:
        kernel.close()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_stop_anywhere_in_the_first_build_leaves_the_kernel_whole(tmp_path: Path,
                                                                    round_: int) -> None:
    """Stop the first BUILD of fresh kernels at moments spread over its whole run, measured
    on this machine (so a fast or slow machine meets the imports too); then BUILD, CONVERT
    and SEARCH must work in the same kernel."""
    folder = _kernel_folder(tmp_path)
    build = (f"BUILD MODEL b USING SimCLR {TINY.format(extra=', overwrite=True')} "
             "AS SELECT * FROM imgs")
    window = _first_build_seconds(folder, build)
    kernels = 8
    offset = random.Random(round_).random()
    for i in range(kernels):
        delay = 0.1 + window * (i + offset) / kernels
        kernel = KernelSession(folder)
        try:
            assert kernel.execute("COPY imgs OPTIONS (overwrite=True) FROM 'imgs.csv'"
                                  ).status == "ok"
            reply = kernel.execute(build, timeout=120, interrupt_after=delay)
            assert reply.status == "ok" or reply.content["ename"] == "KeyboardInterrupt", \
                (delay, reply.content)
            for cell in (build, "CONVERT USING b AS SELECT * FROM imgs",
                         "SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING b AS "
                         "SELECT * FROM imgs) ORDER BY b_simclr_similarity1 DESC LIMIT 1"):
                reply = kernel.execute(cell, timeout=120)
                assert reply.status == "ok", (delay, window, cell, reply.content.get("evalue"))
            assert reply.texts[-1].splitlines()[2].strip() == "imgs/3.png", reply.texts
        finally:
            kernel.close()


def _kill(kernel: KernelSession) -> None:
    """kill -9 the kernel's process, as an out-of-memory killer or a crash would."""
    process = kernel.km.provisioner.process
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    kernel.kc.stop_channels()


def _snapshot(kernel: KernelSession, sql: str) -> list[str]:
    reply = kernel.execute(sql, timeout=120)
    assert reply.status == "ok", reply.content.get("evalue")
    return reply.texts


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_during_copy_build_and_convert_leaves_old_or_new(tmp_path: Path,
                                                                round_: int) -> None:
    folder = _kernel_folder(tmp_path, count=64)
    rows = ["image_path,label"] + [f"imgs/{i % 64}.png,{i}" for i in range(400_000)]
    (folder / "big.csv").write_text("\n".join(rows) + "\n")
    rng = random.Random(round_)
    kernel = KernelSession(folder)
    checks = {
        "COPY": ("COPY big OPTIONS (overwrite=True) FROM 'big.csv'",
                 "SELECT COUNT(*) AS n, SUM(label) AS s FROM big"),
        "BUILD": ("BUILD MODEL m USING SimCLR OPTIONS (max_epochs=3, batch_size=8, seed=2, "
                  "overwrite=True) AS SELECT * FROM imgs", "LIST MODEL"),
        "CONVERT": ("CONVERT USING m OPTIONS (batch_size=4) AS SELECT * FROM imgs",
                    "SELECT image_path, m_simclr FROM imgs ORDER BY image_path"),
    }
    search = ("SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING m AS SELECT * "
              "FROM imgs) ORDER BY m_simclr_similarity1 DESC LIMIT 1")
    try:
        assert kernel.execute("COPY imgs FROM 'imgs.csv'; COPY big FROM 'imgs.csv'").status == \
            "ok"
        assert kernel.execute(f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} "
                              "AS SELECT * FROM imgs", timeout=120).status == "ok"
        assert kernel.execute("CONVERT USING m AS SELECT * FROM imgs").status == "ok"
        for name, (cell, check) in checks.items():
            before = _snapshot(kernel, check)
            kernel.kc.execute(cell)
            time.sleep(rng.uniform(0.3, 2.5))
            _kill(kernel)
            kernel.km.shutdown_kernel(now=True)
            kernel = KernelSession(folder)   # the notebook's kernel, restarted
            after = _snapshot(kernel, check)
            if after != before:   # the statement had committed: then all of it is there
                after_again = _snapshot(kernel, check)
                assert after == after_again
            if name == "COPY" and after != before:
                assert after[-1].split()[-2:] == ["400000", str(sum(range(400_000)))]
            # whatever happened, the model loads, and search agrees with the index
            reply = kernel.execute(search, timeout=120)
            if name == "BUILD" and after != before:
                # the new model is there, and the column still holds the old one's vectors:
                # SEARCH says so and what to do, and doing it makes SEARCH work
                assert reply.status == "error", reply.texts
                assert reply.content["ename"] == "DataError", reply.content
                assert "as it was before it was built again" in reply.content["evalue"]
                assert "CONVERT USING m AS SELECT * FROM imgs" in reply.content["evalue"]
                assert kernel.execute("CONVERT USING m AS SELECT * FROM imgs",
                                      timeout=120).status == "ok"
                reply = kernel.execute(search, timeout=120)
            assert reply.status == "ok", (name, reply.content.get("evalue"))
            assert reply.texts[-1].splitlines()[2].strip() == "imgs/3.png", (name, reply.texts)
            services = Services.open(Settings.from_env(cwd=folder, env={}))
            try:
                with services.store.begin() as tx:
                    made = {e.collection for e in services.catalog.entries(tx)}
                assert set(services.catalog.index.names()) == made, name
            finally:
                services.close()
    finally:
        kernel.close()

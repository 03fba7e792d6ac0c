"""COPY, plain SQL and LIST TABLE on a temporary workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from thanosql_kernel.errors import (
    AlreadyExistsError,
    DatabaseError,
    DataError,
    NotFoundError,
    OptionError,
    ThanoSQLError,
    ThanoSQLSyntaxError,
)
from thanosql_kernel.results import Message, Table

from .conftest import Engine

CSV = "Image_Path,FileName,Label\na/1.jpg,1.jpg,5\na/2.jpg,2.jpg,0\na/3.jpg,3.jpg,4\n"


def write(engine: Engine, name: str, text: str | bytes) -> Path:
    path = engine.cwd / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.services.store.begin() as conn:
        names = engine.services.store.table_names(conn)
    return {n: engine.rows(f"SELECT * FROM {n} ORDER BY 1") for n in names}


def test_copy_csv_lower_cases_columns_and_reports_rows(engine: Engine) -> None:
    write(engine, "t.csv", CSV)
    result = engine.one("COPY t FROM 't.csv'")
    assert isinstance(result, Message) and result.text == "Success: 3 rows copied into t"
    table = engine.one("SELECT * FROM t ORDER BY label")
    assert isinstance(table, Table)
    assert table.columns == ("image_path", "filename", "label")
    assert table.rows == (("a/2.jpg", "2.jpg", 0), ("a/3.jpg", "3.jpg", 4), ("a/1.jpg", "1.jpg", 5))


def test_copy_existing_table_needs_an_option_and_keeps_the_table(engine: Engine) -> None:
    write(engine, "t.csv", CSV)
    engine.run("COPY t FROM 't.csv'")
    before = snapshot(engine)
    with pytest.raises(AlreadyExistsError) as caught:
        engine.run("COPY t FROM 't.csv'")
    assert "overwrite=True" in str(caught.value) and "if_exists='append'" in str(caught.value)
    assert snapshot(engine) == before


def test_copy_overwrite_and_if_exists(engine: Engine) -> None:
    write(engine, "t.csv", CSV)
    write(engine, "u.csv", "image_path,filename,label\nz.jpg,z.jpg,9\n")
    engine.run("COPY t FROM 't.csv'")
    assert engine.one("COPY t OPTIONS (overwrite=True) FROM 'u.csv'").text == \
        "Success: 1 row copied into t"
    assert engine.rows("SELECT label FROM t") == [(9,)]
    engine.run("COPY t OPTIONS (if_exists='append') FROM 't.csv'")
    assert engine.rows("SELECT count(*) FROM t") == [(4,)]
    engine.run("COPY t OPTIONS (if_exists='replace') FROM 't.csv'")
    assert engine.rows("SELECT count(*) FROM t") == [(3,)]
    with pytest.raises(OptionError, match="contradict"):
        engine.run("COPY t OPTIONS (overwrite=True, if_exists='append') FROM 't.csv'")
    with pytest.raises(OptionError, match="'fail', 'replace', 'append'"):
        engine.run("COPY t OPTIONS (if_exists='merge') FROM 't.csv'")
    with pytest.raises(OptionError, match="overwrite, if_exists|overwrite \\("):
        engine.run("COPY t OPTIONS (overwrit=True) FROM 't.csv'")
    with pytest.raises(OptionError, match="True or False"):
        engine.run("COPY t OPTIONS (overwrite=1) FROM 't.csv'")


def test_failed_append_leaves_the_table_exactly_as_it_was(engine: Engine) -> None:
    write(engine, "t.csv", CSV)
    write(engine, "other.csv", "colour,size\nred,3\n")
    engine.run("COPY t FROM 't.csv'")
    before = snapshot(engine)
    with pytest.raises(DataError, match="colour, size"):
        engine.run("COPY t OPTIONS (if_exists='append') FROM 'other.csv'")
    engine.run("CREATE TABLE strict_t (a INTEGER NOT NULL)")
    write(engine, "nulls.csv", "a,b\n1,2\n,3\n")
    with pytest.raises(DataError):
        engine.run("COPY strict_t OPTIONS (if_exists='append') FROM 'nulls.csv'")
    write(engine, "nulls.csv", "a\n1\n\"\"\n")
    with pytest.raises(DatabaseError, match="(?i)not[ -]null"):
        engine.run("COPY strict_t OPTIONS (if_exists='append') FROM 'nulls.csv'")
    before["strict_t"] = []
    assert snapshot(engine) == before


def test_failed_overwrite_keeps_the_old_table(engine: Engine, monkeypatch) -> None:
    import pandas as pd

    write(engine, "t.csv", CSV)
    engine.run("COPY t FROM 't.csv'")
    before = snapshot(engine)
    real = pd.DataFrame.to_sql

    def half_then_fail(self, name, con, **kw):  # writes rows, then the disk "fills up"
        real(self.iloc[:1], name, con, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_sql", half_then_fail)
    with pytest.raises(OSError):
        engine.run("COPY t OPTIONS (overwrite=True) FROM 't.csv'")
    monkeypatch.undo()
    assert snapshot(engine) == before


def test_interrupted_copy_keeps_the_old_table(engine: Engine, monkeypatch) -> None:
    import pandas as pd

    write(engine, "t.csv", CSV)
    engine.run("COPY t FROM 't.csv'")
    before = snapshot(engine)

    def interrupted(self, name, con, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_sql", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.run("COPY t OPTIONS (overwrite=True) FROM 't.csv'")
    monkeypatch.undo()
    assert snapshot(engine) == before


def test_non_utf8_file_names_file_and_line(engine: Engine) -> None:
    write(engine, "k.csv", "name,label\nabc,1\n".encode() + "한글,2\n".encode("cp949"))
    with pytest.raises(DataError) as caught:
        engine.run("COPY k FROM 'k.csv'")
    text = str(caught.value)
    assert "'k.csv' is not UTF-8" in text and "line 3" in text and "column 1" in text
    assert snapshot(engine) == {}


def test_copy_other_formats(engine: Engine) -> None:
    import pandas as pd

    frame = pd.DataFrame({"Name": ["a", "b"], "Score": [1.5, 2.5]})
    frame.to_parquet(engine.cwd / "f.parquet")
    frame.to_excel(engine.cwd / "f.xlsx", index=False)
    write(engine, "f.json", json.dumps([{"Name": "a", "Score": 1.5}, {"Name": "b", "Score": 2.5}]))
    write(engine, "f.jsonl", '{"Name": "a", "Score": 1.5}\n{"Name": "b", "Score": 2.5}\n')
    for suffix in ("parquet", "xlsx", "json", "jsonl"):
        engine.run(f"COPY f_{suffix} FROM 'f.{suffix}'")
        assert engine.rows(f"SELECT name, score FROM f_{suffix} ORDER BY name") == [
            ("a", 1.5), ("b", 2.5)], suffix


def test_copy_a_folder_of_images(engine: Engine) -> None:
    folder = engine.cwd / "pics"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.jpg", "sub/c.jpeg"):
        Image.new("L", (4, 4)).save(folder / name)
    write(engine, "pics/notes.txt", "not an image")
    engine.run("COPY pics FROM 'pics'")
    assert engine.rows("SELECT image_path, filename FROM pics") == [
        ("pics/a.jpg", "a.jpg"), ("pics/b.png", "b.png"), ("pics/sub/c.jpeg", "c.jpeg")]


@pytest.mark.parametrize("cell, error", [
    ("COPY t FROM 'missing.csv'", NotFoundError),
    ("COPY t FROM 'empty.csv'", DataError),
    ("COPY t FROM 'notes.txt'", DataError),
    ("COPY t FROM 'ragged.csv'", DataError),
    ("COPY t FROM 'dup.csv'", DataError),
    ("COPY t FROM 'nopics'", DataError),
    ("COPY t FORM 't.csv'", ThanoSQLSyntaxError),
    ("COPY t OPTIONS (overwrite=True FROM 't.csv'", ThanoSQLSyntaxError),
    ("COPY t OPTIONS (mode='x') FROM 't.csv'", OptionError),
    ("SELECT * FROM no_such_table", DatabaseError),
    ("INSERT INTO t VALUES (1, 2, 3, 4, 5)", DatabaseError),
    ("INSERT INTO t VALUES ('x', 'y', 1); SELECT 'oops; DELETE FROM t", ThanoSQLSyntaxError),
    ("DELETE FROM t; SELEC 1", DatabaseError),
    ("DROP TABLE t; LIST TABL", ThanoSQLSyntaxError),
    ("SELECT * FROM (LIST TABLE) AS x WHERE no_column = 1", DatabaseError),
    ("BUILD MODEL m USING simclr AS DELETE FROM t", ThanoSQLSyntaxError),
])
def test_malformed_statements_get_one_error_and_leave_tables_unchanged(
        engine: Engine, cell: str, error: type[ThanoSQLError]) -> None:
    write(engine, "t.csv", CSV)
    write(engine, "empty.csv", "")
    write(engine, "notes.txt", "hello")
    write(engine, "ragged.csv", "a,b\n1,2\n3,4,5,6\n")
    write(engine, "dup.csv", "A,a\n1,2\n")
    (engine.cwd / "nopics").mkdir()
    engine.run("COPY t FROM 't.csv'")
    before = snapshot(engine)
    with pytest.raises(error) as caught:
        engine.run(cell)
    assert str(caught.value).strip()
    if not cell.startswith("DELETE FROM t;"):  # a plain SQL statement that ran is kept
        assert snapshot(engine) == before
    else:
        assert snapshot(engine) == {"t": []}


def test_list_table_and_list_as_a_subquery(engine: Engine) -> None:
    write(engine, "t.csv", CSV)
    engine.run("COPY t FROM 't.csv'; CREATE TABLE empty_one (x INTEGER)")
    listing = engine.one("LIST TABLE")
    assert listing.columns == ("table_name", "columns", "row_count")
    assert listing.rows == (("empty_one", "x", 0), ("t", "image_path, filename, label", 3))
    sub = engine.one("SELECT table_name FROM (LIST TABLE) AS l WHERE row_count > 0")
    assert sub.rows == (("t",),)
    # the temporary table behind the sub-query is gone afterwards
    assert engine.one("LIST TABLE").rows == listing.rows


def test_plain_sql_rows_are_cut_at_the_display_limit_but_counted(engine: Engine) -> None:
    engine.run("CREATE TABLE n (i INTEGER)")
    engine.run("INSERT INTO n WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
               "WHERE i < 50) SELECT i FROM c")
    [table] = engine.run("SELECT i FROM n ORDER BY i", row_limit=20)
    assert len(table.rows) == 20 and table.total == 50 and table.rows[0] == (1,)
    assert engine.one("UPDATE n SET i = i + 1 WHERE i <= 5").text == "Success (5 rows affected)"
    assert engine.one("DROP TABLE n").text == "Success"


def test_every_result_is_cut_once_at_the_row_limit_and_sub_queries_see_every_row(
        engine: Engine) -> None:
    from thanosql_kernel.engine import Run, execute
    from thanosql_kernel.syntax import parse

    engine.run("; ".join(f"CREATE TABLE t{i:02d} (x INTEGER)" for i in range(25)))
    [listing] = parse("LIST TABLE")
    cut = execute(listing, engine.services, Run(row_limit=20))
    assert len(cut.rows) == 20 and cut.total == 25 and cut.rows[-1][0] == "t19"
    assert len(execute(listing, engine.services, Run()).rows) == 25   # the magic's: all
    [count] = parse("SELECT COUNT(*) FROM (LIST TABLE) AS l")
    assert execute(count, engine.services, Run(row_limit=20)).rows == ((25,),)


def test_like_with_doubled_percent_is_plain_sql(engine: Engine) -> None:
    write(engine, "t.csv", CSV)
    engine.run("COPY t FROM 't.csv'")
    assert engine.one("SELECT filename FROM t WHERE filename LIKE '1%%' ").rows == (("1.jpg",),)


def test_relative_paths_resolve_against_the_kernel_folder(engine: Engine) -> None:
    write(engine, "data/deep/t.csv", CSV)
    engine.run("COPY t FROM 'data/deep/t.csv'")
    absolute = engine.cwd / "data" / "deep" / "t.csv"
    engine.run(f"COPY t2 FROM '{absolute}'")
    assert engine.rows("SELECT count(*) FROM t2") == [(3,)]


def test_workspace_holds_the_database_by_default(engine: Engine) -> None:
    engine.run("CREATE TABLE x (a INTEGER)")
    in_workspace = (engine.cwd / ".thanosql" / "thanosql.db").exists()
    assert in_workspace == engine.services.settings.database_url.startswith("sqlite:")


def test_magic_lines_answer_in_one_line(engine: Engine) -> None:
    results = engine.run("%load_ext thanosql\n%thanosql API_TOKEN=secret")
    assert results[0] is None
    assert isinstance(results[1], Message) and "no API token" in results[1].text

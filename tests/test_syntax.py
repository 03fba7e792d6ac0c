"""The parser: every statement form round-trips, and every failure points at its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from thanosql_kernel.errors import ThanoSQLSyntaxError
from thanosql_kernel.syntax import (
    ALL_NODES,
    BuildModel,
    Convert,
    Copy,
    DeleteModel,
    GetDataset,
    ListDatasets,
    ListModels,
    ListTables,
    Magic,
    Options,
    PrintImage,
    SearchImage,
    Sql,
    is_complete,
    parse,
)

IDENTITY = [line for line in (Path(__file__).parent / "fixtures" / "identity.sql")
            .read_text().splitlines() if line and not line.startswith("--")]

SEED_CELLS = {
    "copy": '%%thanosql\nCOPY mnist_train\nOPTIONS(overwrite=True)\n'
            'FROM "tutorial_data/mnist_data/mnist_train.csv"',
    "build": '%%thanosql\nBUILD MODEL my_image_search_model\nUSING SimCLR\nOPTIONS (\n'
             '    image_col="image_path",\n    max_epochs=1,\n    overwrite=True\n    )\nAS \n'
             'SELECT * \nFROM mnist_train',
    "convert": '%%thanosql\nCONVERT USING my_image_search_model\nOPTIONS (\n'
               '    table_name= "mnist_test",\n    image_col="image_path"\n    )\nAS \n'
               'SELECT * \nFROM mnist_test\n',
    "search": "%%thanosql\nSEARCH IMAGE images='tutorial_data/mnist_data/test/923.jpg' \n"
              "USING my_image_search_model \nAS \nSELECT * \nFROM mnist_test",
    "print": "%%thanosql\nPRINT IMAGE \nAS (\n    SELECT image_path, "
             "my_image_search_model_simclr_similarity1 \n    FROM (\n        SEARCH IMAGE "
             "images='tutorial_data/mnist_data/test/923.jpg' \n        USING "
             "my_image_search_model \n        AS \n        SELECT * \n        FROM mnist_test\n"
             "        )\n    ORDER BY my_image_search_model_simclr_similarity1 DESC \n"
             "    LIMIT 4\n    )",
}


@pytest.mark.parametrize("text", IDENTITY)
def test_round_trip(text: str) -> None:
    [node] = parse(text)
    assert node.to_sql() == text
    assert parse(node.to_sql()) == [node]


def test_every_node_type_has_a_round_trip_case() -> None:
    seen = {type(parse(text)[0]) for text in IDENTITY}
    assert seen == set(ALL_NODES)


def test_seed_cells_parse_to_the_expected_nodes() -> None:
    [copy] = parse(SEED_CELLS["copy"])
    assert copy == Copy("mnist_train", "tutorial_data/mnist_data/mnist_train.csv",
                        Options((("overwrite", True),)))
    [build] = parse(SEED_CELLS["build"])
    assert build == BuildModel("my_image_search_model", "simclr",
                               Sql("SELECT * \nFROM mnist_train"),
                               Options((("image_col", "image_path"), ("max_epochs", 1),
                                        ("overwrite", True))))
    [convert] = parse(SEED_CELLS["convert"])
    assert isinstance(convert, Convert) and convert.options.as_dict() == {
        "table_name": "mnist_test", "image_col": "image_path"}
    [search] = parse(SEED_CELLS["search"])
    assert search == SearchImage("my_image_search_model", Sql("SELECT * \nFROM mnist_test"),
                                 ("tutorial_data/mnist_data/test/923.jpg",))
    [printed] = parse(SEED_CELLS["print"])
    assert isinstance(printed, PrintImage)
    query = printed.query
    assert isinstance(query, Sql) and len(query.subqueries) == 1
    name, sub = query.subqueries[0]
    assert name in query.text and "SEARCH" not in query.text
    assert isinstance(sub, SearchImage)
    assert (sub.model, sub.images, sub.query.text.split()) == (
        search.model, search.images, search.query.text.split())


def test_compatibility_lines() -> None:
    nodes = parse("%load_ext thanosql\n%thanosql API_TOKEN=abc123\n")
    assert nodes == [Magic("load_ext", "thanosql"), Magic("thanosql", "API_TOKEN=abc123")]
    assert parse("%thanosql http://localhost:8000") == [Magic("thanosql",
                                                              "http://localhost:8000")]
    # %%psql: plain SQL even where it looks like ThanoSQL
    assert parse("%%psql\nSELECT * FROM (LIST MODEL)") == [Sql("SELECT * FROM (LIST MODEL)")]
    assert parse("%psql SELECT 1") == [Sql("SELECT 1")]


def test_several_statements_split_outside_strings_and_comments() -> None:
    nodes = parse("SELECT 'a;b'; -- c;d\nSELECT \"x;y\" /* ; */ FROM t;\n\nLIST TABLE;")
    assert nodes == [Sql("SELECT 'a;b'"), Sql('SELECT "x;y"         FROM t'), ListTables()]
    assert [n.line for n in nodes] == [1, 2, 4]


def test_keywords_and_names_are_case_insensitive() -> None:
    assert parse("copy MyTable options (OVERWRITE=true) from 'x.csv'") == [
        Copy("mytable", "x.csv", Options((("overwrite", True),)))]
    assert parse("list model") == [ListModels()]
    assert parse("List ThanoSQL Dataset") == [ListDatasets()]
    assert parse("get thanosql dataset MNIST_DATA") == [GetDataset("mnist_data")]
    assert parse("delete model M") == [DeleteModel("m")]


def test_option_values_are_python_like_literals() -> None:
    [node] = parse("COPY t OPTIONS (a='x', b=\"y\", c=3, d=-2.5, e=3e-4, f=None, g=[1, 'z'],"
                   " h=False, i=[],) FROM 'f.csv'")
    assert node.options.as_dict() == {"a": "x", "b": "y", "c": 3, "d": -2.5, "e": 3e-4,
                                      "f": None, "g": (1, "z"), "h": False, "i": ()}
    assert isinstance(node.options.as_dict()["c"], int)


def test_image_and_images_and_lists() -> None:
    [one] = parse("SEARCH IMAGE image='a.jpg' USING m AS SELECT * FROM t")
    [two] = parse("SEARCH IMAGE images=['a.jpg', \"b.jpg\"] USING m AS SELECT * FROM t")
    assert one.images == ("a.jpg",) and two.images == ("a.jpg", "b.jpg")


@pytest.mark.parametrize("cell, line, column, words", [
    ('COPY t FORM "x.csv"', 1, 8, ["Expected FROM", "'FORM'"]),
    ("COPY t OPTIONS(overwrite=Tru) FROM 'x'", 1, 26, ["value", "'Tru)'"]),
    ("COPY OPTIONS (a=1) FROM 'x'", 1, 6, ["Expected a name"]),
    ("SELECT 1;\n  LIST TABL", 2, 8, ["TABLE, MODEL or THANOSQL DATASET"]),
    ("BUILD MODEL m USING simclr\nAS DROP TABLE t", 2, 4, ["Expected a query", "'DROP'"]),
    ("SELECT 1;\nSELECT 'abc; DROP TABLE t", 2, 8, ["Unterminated string"]),
    ("SELECT (1", 1, 8, ["never closed"]),
    ("SELECT 1)", 1, 9, ["closes no parenthesis"]),
    ("/* note\nSELECT 1", 1, 1, ["Unterminated comment"]),
    ("PRINT IMAGE AS (PRINT IMAGE AS SELECT 1)", 1, 17, ["does not return rows"]),
    ("COPY t FROM 'x' extra", 1, 17, ["end of the statement", "'extra'"]),
    ("COPY t OPTIONS (a=1, a=2) FROM 'x'", 1, 1, ["given twice"]),
    ("%sql SELECT 1", 1, 1, ["Unknown magic %sql"]),
    ("%%bash\nls", 1, 1, ["Unknown cell magic %%bash"]),
    ("SEARCH IMAGE images=[1, 2] USING m AS SELECT * FROM t", 1, 1, ["path in quotes"]),
    ("BUILD MODEL m USING simclr OPTIONS (max_epochs=1 AS SELECT 1", 1, 50, ["Expected ')'"]),
])
def test_syntax_errors_point_at_the_problem(cell: str, line: int, column: int,
                                            words: list[str]) -> None:
    with pytest.raises(ThanoSQLSyntaxError) as caught:
        parse(cell)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    text = str(error)
    for word in words:
        assert word in text
    # the caret sits under the reported column of the quoted line
    lines = text.splitlines()
    quoted = next(i for i, x in enumerate(lines) if x.startswith("  ") and x.strip())
    assert lines[quoted + 1] == "  " + " " * (column - 1) + "^"


def test_nothing_runs_when_a_later_statement_is_malformed() -> None:
    # parse() fails as a whole, so the first statement never reaches the engine
    with pytest.raises(ThanoSQLSyntaxError):
        parse("DROP TABLE t; COPY x FORM 'y'")


@pytest.mark.parametrize("code, status", [
    ("SELECT 1;", "complete"),
    ("SELECT *\nFROM t\nLIMIT 3\n", "complete"),
    ("", "complete"),
    ("%load_ext thanosql", "complete"),
    ("SELECT *", "incomplete"),
    ("SELECT *\nFROM t", "incomplete"),
    ("SELECT 'abc;\n", "incomplete"),
    ("SELECT (1,\n", "incomplete"),
    ("/* a comment;\n", "incomplete"),
    ("SELECT 1)", "invalid"),
    ("%%bash", "invalid"),
])
def test_is_complete(code: str, status: str) -> None:
    assert is_complete(code) == status


def test_nodes_are_immutable() -> None:
    [node] = parse("LIST TABLE")
    with pytest.raises(AttributeError):
        node.line = 3  # type: ignore[misc]
    assert isinstance(parse("SELECT 1")[0], Sql) and ListTables() == ListTables()
    assert PrintImage in ALL_NODES


@pytest.mark.parametrize(("sql", "written", "read", "renamed"), [
    ("CREATE TABLE zeros AS SELECT * FROM imgs WHERE label = 0", ("zeros",), ("imgs",), None),
    ("ALTER TABLE zeros RENAME TO noughts", ("zeros",), (), ("zeros", "noughts")),
    ('ALTER TABLE "Zeros" RENAME TO Noughts', ("zeros",), (), ("zeros", "noughts")),
    ("DROP TABLE a, b", ("a", "b"), (), None),
    ("WITH w AS (SELECT * FROM t JOIN u ON t.a = u.a) INSERT INTO x SELECT * FROM w",
     ("x",), ("t", "u"), None),
    ("ALTER TABLE t ADD COLUMN c INTEGER", ("t",), (), None),
    ("SELECT * FROM t", (), ("t",), None),
    ("not sql at all (", (), (), None),
])
def test_table_changes_tell_which_tables_a_statement_writes_reads_and_renames(
        sql: str, written: tuple[str, ...], read: tuple[str, ...],
        renamed: tuple[str, str] | None) -> None:
    from thanosql_kernel.syntax.shape import table_changes

    for dialect in (None, "sqlite", "postgresql"):
        changes = table_changes(sql, dialect)
        assert (changes.written, changes.read, changes.renamed) == (written, read, renamed)

"""ThanoSQL in the stock Python kernel: ``%load_ext thanosql``, ``%%thanosql`` cells, rows as
DataFrames, parameters bound from Python, errors in the kernel's words, and the stop button."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from thanosql_kernel.engine import Run, execute
from thanosql_kernel.errors import DataError, NotFoundError
from thanosql_kernel.frontend import bind_parameters
from thanosql_kernel.syntax import parse
from thanosql_kernel.syntax.params import parameters

from .conftest import Engine, KernelSession, Reply, server_env
from .helpers import make_images

SEED = Path(__file__).parent / "fixtures" / "seed_tutorial_cells.json"
CSV = "image_path,filename,label\na/1.jpg,1.jpg,5\na/2.jpg,2.jpg,0\n"


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    """The stock Python kernel with the extension loaded, in a folder of its own."""
    session = KernelSession(tmp_path_factory.mktemp("python"), kernel_name="python3")
    reply = session.execute("%load_ext thanosql")
    assert reply.status == "ok" and reply.messages == [], reply.messages
    (session.cwd / "t.csv").write_text(CSV)
    assert session.execute("%thanosql COPY t OPTIONS (overwrite=True) FROM 't.csv'").status \
        == "ok"
    yield session
    session.close()


def printed(reply: Reply) -> str:
    return "".join(m["text"] for m in reply.of("stream"))


def test_both_front_ends_run_cells_only_through_the_shared_runner() -> None:
    """kernel.py and magic.py neither parse, execute, draw progress nor word errors: the
    runner in frontend.py does, once for both."""
    import ast

    package = Path(__file__).resolve().parent.parent / "thanosql_kernel"
    owned = {"parse", "execute", "error_content", "progress_bundle", "progress_text",
             "bind_parameters", "Bars"}
    for name in ("kernel.py", "magic.py"):
        tree = ast.parse((package / name).read_text())
        imported = {alias.asname or alias.name for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) for alias in node.names}
        assert "CellRunner" in imported and not imported & owned, (name, imported & owned)


# -- parameters, on the engine ------------------------------------------------------------

def test_parameters_are_found_outside_strings_comments_and_casts() -> None:
    sql = ("SELECT :a, ':b', \":c\", x::int, arr[1:d], `:e` -- :f\n/* :g */ "
           "FROM t WHERE y = :h_2 AND z IN :a AND t = '12:30' AND $$ :i $$ = $tag$:j$tag$")
    assert [name for _, name in parameters(sql)] == ["a", "h_2", "a"]
    assert [sql[at:at + 4] for at, _ in parameters(sql)] == [":a, ", ":h_2", ":a A"]


def run_bound(engine: Engine, cell: str, **namespace: Any) -> list[Any]:
    nodes = parse(cell)
    run = Run(bind_parameters(nodes, namespace))
    return [execute(node, engine.services, run) for node in nodes]


def test_bound_values_are_values_never_sql(engine: Engine) -> None:
    engine.run("CREATE TABLE p (name TEXT, n INTEGER, note TEXT);"
               "INSERT INTO p VALUES ('a', 1, '5%'), ('b', 2, NULL), ('c''s', 3, '50%')")
    evil = "a' OR '1'='1"
    [table] = run_bound(engine, "SELECT name FROM p WHERE name = :evil", evil=evil)
    assert table.rows == ()   # the quote is part of the value, not of the statement
    assert engine.rows("SELECT count(*) FROM p") == [(3,)]
    [table] = run_bound(engine, "SELECT name FROM p WHERE name = :who", who="c's")
    assert table.rows == (("c's",),)
    # a literal % (doubled for drivers that use it as their placeholder) stays one %
    [table] = run_bound(engine, "SELECT name FROM p WHERE note LIKE '%\\%' ESCAPE '\\' "
                                "AND n > :low ORDER BY n", low=0)
    assert table.rows == (("a",), ("c's",))
    [table] = run_bound(engine, "SELECT name FROM p WHERE note LIKE '5%%' AND n >= :low",
                        low=1)
    assert table.rows == (("a",), ("c's",))
    import numpy as np

    for cell in ("SELECT name FROM p WHERE n IN :ns ORDER BY n",
                 "SELECT name FROM p WHERE n IN (:ns) ORDER BY n"):
        [table] = run_bound(engine, cell, ns=np.array([3, 1]))
        assert table.rows == (("a",), ("c's",))
    [table] = run_bound(engine, "SELECT :x AS x, :y AS y", x=np.float32(0.5), y=b"\x00\x01")
    assert table.rows[0][0] == 0.5 and bytes(table.rows[0][1]) == b"\x00\x01"
    [message] = run_bound(engine, "UPDATE p SET note = :note WHERE n = :n", note="it's; DROP",
                          n=np.int64(2))
    assert engine.rows("SELECT note FROM p WHERE n = 2") == [("it's; DROP",)]
    # a ThanoSQL statement's query and the SQL around a ThanoSQL sub-query bind too
    [table] = run_bound(engine, "SELECT table_name FROM (LIST TABLE) WHERE row_count = :rows",
                        rows=3)
    assert table.rows == (("p",),)
    [images] = run_bound(engine, "PRINT IMAGE OPTIONS (image_col='name') AS "
                                 "SELECT name FROM p WHERE n = :n", n=3)
    assert [i.path for i in images.images] == ["c's"]


def test_parameters_that_cannot_be_bound_are_clear_errors_before_anything_runs(
        engine: Engine) -> None:
    engine.run("CREATE TABLE q (n INTEGER)")
    cell = "INSERT INTO q VALUES (1);\nSELECT * FROM q\n WHERE n = :nowhere"
    with pytest.raises(NotFoundError, match="no Python variable named nowhere") as caught:
        bind_parameters(parse(cell), {})
    assert cell[caught.value.at:].startswith(":nowhere")
    assert engine.rows("SELECT count(*) FROM q") == [(0,)]
    with pytest.raises(NotFoundError, match="no Python variables"):
        bind_parameters(parse("SELECT :x"), None)   # the ThanoSQL kernel has none
    for value, words in [({"a": 1}, "is a dict"), ([], "empty list"), ([[1], [2]], "lists")]:
        with pytest.raises(DataError, match=words):
            bind_parameters(parse("SELECT * FROM q WHERE n IN :v"), {"v": value})


def test_the_thanosql_kernel_says_why_a_parameter_has_no_value(
        kernel: KernelSession) -> None:
    reply = kernel.execute("SELECT 1 AS one WHERE 1 = :x")
    assert reply.status == "error" and reply.content["ename"] == "NotFoundError"
    assert "no Python variables" in reply.content["evalue"]
    assert "line 1, column 27" in reply.content["evalue"]


# -- the magics in the stock Python kernel -------------------------------------------------

def test_rows_come_back_as_dataframes(python: KernelSession) -> None:
    reply = python.execute("df = %thanosql SELECT * FROM t ORDER BY label\n"
                           "print(type(df).__name__, df.shape, list(df.columns), "
                           "df['label'].tolist(), df['label'].dtype)")
    assert printed(reply) == ("DataFrame (2, 3) ['image_path', 'filename', 'label'] [0, 5] "
                              "int64\n")
    reply = python.execute("%%thanosql\nSELECT filename, label\nFROM t")
    [result] = reply.of("execute_result")
    assert 'class="dataframe"' in result["data"]["text/html"]
    assert result["data"]["text/plain"].split("\n")[0].split() == ["filename", "label"]
    assert reply.of("display_data") == [] and printed(reply) == ""
    assert printed(python.execute("print(type(_).__name__, len(_))")) == "DataFrame 2\n"
    # every row, where the ThanoSQL kernel shows the display limit's 20
    reply = python.execute("%%thanosql many <<\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "
                           "SELECT i + 1 FROM c WHERE i < 30) SELECT i FROM c")
    assert reply.status == "ok" and reply.messages == []
    assert printed(python.execute("print(len(many), many['i'].sum())")) == "30 465\n"


def test_each_statement_of_a_cell_shows_its_result(python: KernelSession) -> None:
    reply = python.execute("%%thanosql\nCREATE TABLE s (x INTEGER);\n"
                           "INSERT INTO s VALUES (1), (2);\nSELECT * FROM s;\n"
                           "SELECT sum(x) AS total FROM s")
    assert reply.status == "ok"
    assert printed(reply) == "Success\nSuccess (2 rows affected)\n"
    [shown] = reply.of("display_data")
    assert 'class="dataframe"' in shown["data"]["text/html"]
    [result] = reply.of("execute_result")
    assert result["data"]["text/plain"].split() == ["total", "0", "3"]
    order = [m["msg_type"] for m in reply.messages]
    assert order == ["stream", "display_data", "execute_result"] or \
        order == ["stream", "stream", "display_data", "execute_result"]


def test_python_values_are_bound_parameters(python: KernelSession) -> None:
    reply = python.execute("import numpy as np\nlabel = np.int64(5)\nlabels = [0, 5]\n"
                           "evil = \"x' OR '1'='1\"\n"
                           "a = %thanosql SELECT filename FROM t WHERE label = :label\n"
                           "b = %thanosql SELECT count(*) AS n FROM t WHERE filename = :evil\n"
                           "c = %thanosql SELECT count(*) AS n FROM t WHERE label IN :labels\n"
                           "def first(k):\n"
                           "    rows = %thanosql SELECT filename FROM t WHERE label = :k\n"
                           "    return rows\n"
                           "print(a['filename'].tolist(), b['n'][0], c['n'][0], "
                           "first(0)['filename'].tolist())")
    assert printed(reply) == "['1.jpg'] 0 2 ['2.jpg']\n", reply.content
    reply = python.execute("%%thanosql\nSELECT *\nFROM t WHERE label = :unset")
    assert reply.status == "error" and reply.content["ename"] == "NotFoundError"
    [error] = reply.of("error")
    assert "line 3, column 22" in error["traceback"][0] and "unset = …" in error["traceback"][0]


def test_errors_are_the_kernels_one_message(python: KernelSession, kernel: KernelSession
                                            ) -> None:
    for cell, ename in [("%%thanosql\nCOPY t FORM 'x'", "ThanoSQLSyntaxError"),
                        ("%%thanosql\nSELECT 1;\nSELECT * FROM nowhere", "DatabaseError"),
                        ("%thanosql COPY u FROM 'missing.csv'", "NotFoundError"),
                        ("%thanosql COPY u OPTIONS (bogus=1) FROM 't.csv'", "OptionError")]:
        reply = python.execute(cell)
        assert reply.status == "error" and reply.content["ename"] == ename, reply.content
        [error] = reply.of("error")
        assert error["ename"] == ename
        trace = "\n".join(error["traceback"])
        assert "Traceback" not in trace and 'File "' not in trace and "site-packages" \
            not in trace
        # word for word as in the ThanoSQL kernel (where the words depend on no state)
        if ename in ("ThanoSQLSyntaxError", "OptionError"):
            in_kernel = kernel.execute(cell.replace("%thanosql ", ""))
            assert in_kernel.of("error")[0]["traceback"] == error["traceback"]
    assert printed(python.execute("print('still here')")) == "still here\n"
    reply = python.execute("%thanosql")
    assert reply.status == "error" and reply.content["ename"] == "UsageError"
    assert reply.content["evalue"].startswith("%thanosql needs a statement")


def test_the_original_server_lines_get_the_kernels_answer(python: KernelSession,
                                                          kernel: KernelSession) -> None:
    [answer] = kernel.execute("%thanosql API_TOKEN=abc").texts
    for line in ("%thanosql API_TOKEN=abc", "%thanosql https://thanosql.example/api"):
        reply = python.execute(line)
        assert reply.status == "ok" and printed(reply) == answer + "\n"
        assert reply.of("execute_result") == []


def test_progress_in_place_embeddings_as_arrays_and_the_stop_button(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", count=32, size=16)
    python = KernelSession(tmp_path, kernel_name="python3")
    try:
        assert python.execute("%load_ext thanosql").status == "ok"
        assert python.execute("%thanosql COPY imgs FROM 'imgs.csv'").status == "ok"
        reply = python.execute("%%thanosql\nBUILD MODEL m USING SimCLR OPTIONS (max_epochs=2, "
                               "batch_size=8, embedding_dim=128, seed=1) AS SELECT * FROM imgs",
                               timeout=120)
        assert reply.status == "ok", reply.content
        ids = {m["transient"]["display_id"] for m in reply.of("display_data")}
        assert len(ids) == 1
        updates = reply.of("update_display_data")
        assert updates and {u["transient"]["display_id"] for u in updates} == ids
        assert "100%" in updates[-1]["data"]["text/plain"]
        assert "<progress" in updates[-1]["data"]["text/html"]
        lines = printed(reply).splitlines()
        assert lines[0].startswith("epoch 1/2") and lines[-1].startswith("Success: built m")

        reply = python.execute("emb = %thanosql CONVERT USING m AS SELECT * FROM imgs\n"
                               "v = emb['m_simclr'][0]\n"
                               "print(type(v).__name__, v.dtype, v.shape, len(emb))",
                               timeout=120)
        assert printed(reply).splitlines()[-1] == "ndarray float32 (128,) 32", reply.content
        models = python.execute("print(%thanosql LIST MODEL)")
        cache = tmp_path / ".thanosql" / "cache" / "models"
        cached = sorted(p.name for p in cache.iterdir())

        started = time.monotonic()
        reply = python.execute("%%thanosql\nBUILD MODEL long USING SimCLR OPTIONS "
                               "(max_epochs=1000, batch_size=8) AS SELECT * FROM imgs",
                               timeout=60, interrupt_after=3.0)
        stopped = time.monotonic() - started - 3.0
        assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt"
        [error] = reply.of("error")
        assert error["traceback"] == ["\x1b[0;31mKeyboardInterrupt\x1b[0m: Interrupted: the "
                                      "statement was stopped, and nothing it had begun was "
                                      "kept.\nIn the statement:\n  BUILD MODEL long USING "
                                      "SimCLR OPTIONS (max_epochs=1000, batch_size=8) AS "
                                      "SELECT * FROM imgs"]
        assert stopped < 4.0, f"training took {stopped:.1f}s to stop"
        bars = reply.of("update_display_data") or reply.of("display_data")
        assert "stopped at " in bars[-1]["data"]["text/plain"]
        assert printed(python.execute("print(%thanosql LIST MODEL)")) == printed(models)
        assert sorted(p.name for p in cache.iterdir()) == cached   # nothing half-written
        assert python.execute("x = 1 + 1").status == "ok"
    finally:
        python.close()


# -- the seed tutorial, verbatim, in both kernels ------------------------------------------

def run_notebook(folder: Path, kernel_name: str, cells: list[str],
                 monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    folder.mkdir()
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    with server_env() as env, monkeypatch.context() as m:
        for key in ("THANOSQL_DATABASE_URL", "THANOSQL_CHROMA_URL", "THANOSQL_WORKSPACE"):
            m.delenv(key, raising=False)
        for key, value in env.items():
            m.setenv(key, value)
        # a fixed thread count, so the two runs train bit for bit alike however busy the
        # machine is (with 'auto' each run takes the cores free at its moment, and an epoch
        # summed in another order parts the two models by more than any tolerance)
        m.setenv("THANOSQL_THREADS", "1")
        NotebookClient(nb, kernel_name=kernel_name, timeout=600,
                       resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(nb, folder / "notebook.ipynb")
    return [cell.outputs for cell in nb.cells]


def html_table(bundle: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and body cells of the first HTML table in a bundle (a DataFrame's index
    column left out)."""
    text = bundle["text/html"]
    rows = [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", text, re.S)]
    header, body = rows[0], rows[1:]
    if 'class="dataframe"' in text:
        header, body = header[1:], [row[1:] for row in body]
    return header, body


#: how far two runs' figures may part: both train at one thread, which is reproducible; the
#: figures shown may still round apart
_TOLERANCE = 2e-3
_DECIMAL = re.compile(r"-?\d+\.\d+")


def same_value(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) <= _TOLERANCE
    except ValueError:
        return a == b


def same_text(a: str, b: str) -> bool:
    """Equal texts, but for decimal figures that may differ within the tolerance."""
    return _DECIMAL.split(a) == _DECIMAL.split(b) and all(
        same_value(x, y) for x, y in zip(_DECIMAL.findall(a), _DECIMAL.findall(b), strict=True))


def same_bundles(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(same_text(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True))


def words(text: str) -> str:
    """A message without the figures that vary from run to run (speeds, times)."""
    return re.sub(r"[\d,.]+ (steps|images|files)/s|in [\d.]+ ?s|done in \w+|\d+s left", "",
                  text).strip()


def test_the_seed_tutorial_in_a_python_notebook_gives_the_kernels_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = json.loads(SEED.read_text())["cells"]
    assert seed[0] == "%load_ext thanosql" and len(seed) == 9
    get = "GET THANOSQL DATASET mnist_data"   # the original read the data from its server
    python = run_notebook(tmp_path / "python", "python3",
                          [seed[0], f"%thanosql {get}", *seed[1:]], monkeypatch)
    kernel = run_notebook(tmp_path / "thanosql", "thanosql", [seed[0], get, *seed[1:]],
                          monkeypatch)
    for source, py, ts in zip([seed[0], get, *seed[1:]], python, kernel, strict=True):
        assert not [o for o in py + ts if o.output_type == "error"], source
        # the ThanoSQL kernel's execute_result is the Python kernel's DataFrame or message
        py_bars = [o.data for o in py if o.output_type == "display_data"
                   and "thanosql-progress" in o.data.get("text/html", "")]
        ts_bars = [o.data for o in ts if o.output_type == "display_data"
                   and "thanosql-progress" in o.data.get("text/html", "")]
        assert len(py_bars) == len(ts_bars) and all(
            same_text(words(a["text/plain"]), words(b["text/plain"]))
            for a, b in zip(py_bars, ts_bars, strict=True)), source
        py_images = [o.data for o in py if o.output_type == "display_data"
                     and "thanosql-progress" not in o.data.get("text/html", "")]
        ts_images = [o.data for o in ts if o.output_type == "display_data"
                     and "thanosql-progress" not in o.data.get("text/html", "")]
        assert same_bundles(py_images, ts_images), source   # PRINT IMAGE: PNGs and captions
        [ts_result] = [o.data for o in ts if o.output_type == "execute_result"] or [None]
        py_results = [o.data for o in py if o.output_type == "execute_result"]
        # what prints, less the lines of long work (epochs, and progress every 10 s)
        messages = [line for o in py if o.output_type == "stream" for line in
                    o.text.splitlines() if not line.startswith("epoch ")
                    and not re.match(r".+ \|[█·]+\| ", line)]
        printed = [line for o in ts if o.output_type == "stream" for line in
                   o.text.splitlines() if not line.startswith("epoch ")
                   and not re.match(r".+ \|[█·]+\| ", line)]
        if ts_result is None:   # printed text alone (PRINT IMAGE's captions): the same
            assert py_results == [] and len(messages) == len(printed), source
            assert all(same_text(words(a), words(b))
                       for a, b in zip(messages, printed, strict=True)), source
        elif "text/html" not in ts_result:
            assert py_results == [] and len(messages) == 1, source
            assert same_text(words(messages[0]), words(ts_result["text/plain"])), source
        else:
            [py_result] = py_results
            assert 'class="dataframe"' in py_result["text/html"] and messages == []
            py_header, py_rows = html_table(py_result)
            ts_header, ts_rows = html_table(ts_result)
            assert py_header == ts_header, source
            shape = re.search(r"\d[\d,]* rows × \d+ columns", ts_result["text/html"])
            assert shape is None or shape.group(0) in py_result["text/html"], source
            plain = [i for i, name in enumerate(ts_header) if not name.endswith("_simclr")]
            for py_row, ts_row in zip(py_rows[:5], ts_rows[:5], strict=True):
                assert all(same_value(py_row[i], ts_row[i]) for i in plain), (py_row, ts_row)
    for outputs in (python[-1], kernel[-1]):
        assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 4

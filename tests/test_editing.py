"""Editing over the Jupyter protocol: completion by context, inspect, errors that point at the
problem, and progress that ends honestly; on the embedded defaults and on the servers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import KernelSession
from .helpers import TINY, make_images

MODEL = "my_model"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    """A kernel with the tutorial's tables (tiny images), a model, a converted table and the
    tutorial data's folder layout."""
    folder = tmp_path_factory.mktemp("editing")
    make_images(folder / "imgs", count=16)
    data = folder / "tutorial_data" / "mnist_data"
    (data / "train").mkdir(parents=True)
    (data / "mnist_train.csv").write_text((folder / "imgs.csv").read_text())
    session = KernelSession(folder)
    for cell in ["COPY mnist_train FROM 'imgs.csv'", "COPY mnist_test FROM 'imgs.csv'",
                 f"BUILD MODEL {MODEL} USING SimCLR {TINY.format(extra='')} "
                 "AS SELECT * FROM mnist_train",
                 f"CONVERT USING {MODEL} AS SELECT * FROM mnist_test"]:
        reply = session.execute(cell, timeout=120)
        assert reply.status == "ok", reply.content
    yield session
    session.close()


def complete(kernel: KernelSession, code: str, cursor: int | None = None) -> dict[str, Any]:
    cursor = len(code) if cursor is None else cursor
    kernel.kc.complete(code, cursor)
    reply = kernel.kc.get_shell_msg(timeout=30)["content"]
    assert reply["status"] == "ok"
    return reply


def matches(kernel: KernelSession, code: str, cursor: int | None = None
            ) -> list[tuple[str, str]]:
    """(match, kind) pairs of a completion."""
    reply = complete(kernel, code, cursor)
    kinds = reply["metadata"]["_jupyter_types_experimental"]
    assert [k["text"] for k in kinds] == reply["matches"]
    return [(k["text"], k["type"]) for k in kinds]


def inspect(kernel: KernelSession, code: str, cursor: int) -> dict[str, Any]:
    kernel.kc.inspect(code, cursor)
    reply = kernel.kc.get_shell_msg(timeout=30)["content"]
    assert reply["status"] == "ok"
    return reply


@pytest.mark.parametrize("code", [
    "SELECT * FROM mn", "SELECT * FROM mnist_train JOIN mn", "INSERT INTO mn",
    "UPDATE mn", "DROP TABLE mn", "COPY mn",
    f"CONVERT USING {MODEL} OPTIONS (table_name='mn",
])
def test_where_a_table_goes_only_tables_are_offered(kernel: KernelSession, code: str) -> None:
    # not the data set mnist_data, not the option or column names that start alike
    assert matches(kernel, code) == [("mnist_test", "table"), ("mnist_train", "table")]


def test_after_using_models_or_base_models(kernel: KernelSession) -> None:
    for statement in ("CONVERT USING my", "SEARCH IMAGE images='x.png' USING my",
                      "PRINT EMBEDDING USING my", "EVALUATE USING my"):
        assert matches(kernel, statement) == [(MODEL, "model")]
    assert matches(kernel, "BUILD MODEL m USING sim") == [("SimCLR", "base model")]
    assert matches(kernel, "DROP MODEL my") == [(MODEL, "model")]


def test_inside_options_the_statements_options_and_their_values(kernel: KernelSession
                                                                ) -> None:
    build = "BUILD MODEL m USING SimCLR OPTIONS ("
    names = [m for m, kind in matches(kernel, build) if kind == "option"]
    assert names[:3] == ["image_col", "label_col", "overwrite"] and "max_epochs" in names
    assert all(kind == "option" for _, kind in matches(kernel, build))
    assert [m for m, _ in matches(kernel, build + "max_epochs=1, ")] == names
    assert matches(kernel, build + "max_epochs=1, fl") == [("flip", "option")]
    assert matches(kernel, build + "flip=") == [("True", "value"), ("False", "value")]
    assert [m for m, _ in matches(kernel, build + "device=")] == ["'auto'", "'cpu'", "'cuda'"]
    copy = [m for m, _ in matches(kernel, "COPY t OPTIONS (")]
    assert copy == ["overwrite", "if_exists"]
    assert [m for m, _ in matches(kernel, "COPY t OPTIONS (if_exists=")] == [
        "'fail'", "'replace'", "'append'"]
    search = [m for m, _ in matches(kernel, f"SEARCH IMAGE USING {MODEL} OPTIONS (se")]
    assert search == ["search_by", "search_input"]
    mapped = [m for m, _ in matches(kernel, f"PRINT EMBEDDING USING {MODEL} OPTIONS (")]
    assert mapped == ["emb_col", "image_col", "color_col", "thumbnails", "width"]
    evaluated = [m for m, _ in matches(kernel, f"EVALUATE USING {MODEL} OPTIONS (")]
    assert evaluated == ["label_col", "k", "image_col", "emb_col", "queries"]


def test_in_a_query_the_columns_of_the_tables_it_reads(kernel: KernelSession) -> None:
    assert matches(kernel, "SELECT * FROM mnist_train WHERE la") == [("label", "column")]
    code = "SELECT la FROM mnist_train"
    assert matches(kernel, code, len("SELECT la")) == [("label", "column")]
    assert ("image_path", "column") in matches(kernel, "SELECT * FROM mnist_train ORDER BY ")
    # a SEARCH sub-query adds its similarity column; the converted table its embeddings
    code = (f"PRINT IMAGE AS (SELECT image_path, my FROM (SEARCH IMAGE images='imgs/1.png' "
            f"USING {MODEL} AS SELECT * FROM mnist_test) ORDER BY 2 DESC LIMIT 4)")
    offered = matches(kernel, code, code.index("my FROM") + 2)
    assert offered[:2] == [(f"{MODEL}_simclr", "column"),
                           (f"{MODEL}_simclr_similarity1", "column")]


def test_inside_a_quoted_path_files_and_folders(kernel: KernelSession) -> None:
    assert matches(kernel, "COPY t FROM 'tutorial_data/mnist_data/mnist_tr") == [
        ("mnist_train.csv", "file")]
    assert matches(kernel, "COPY t FROM 'tutorial_data/") == [("mnist_data/", "folder")]
    reply = complete(kernel, "SEARCH IMAGE images='imgs/1")
    assert reply["matches"][:3] == ["1.png", "10.png", "11.png"]
    assert reply["cursor_start"] == len("SEARCH IMAGE images='imgs/")


def test_after_get_thanosql_dataset_the_data_sets(kernel: KernelSession) -> None:
    assert matches(kernel, "GET THANOSQL DATASET mn") == [("mnist_data", "dataset")]


def test_statement_words_at_the_start(kernel: KernelSession) -> None:
    assert ("search image", "keyword") in matches(kernel, "sea")
    assert matches(kernel, "PRINT IM")[0] == ("IMAGE", "keyword")
    assert matches(kernel, "PRINT EM")[0] == ("EMBEDDING", "keyword")
    assert ("evaluate", "keyword") in matches(kernel, "eva")
    assert [m for m, _ in matches(kernel, "LIST ")][:3] == ["TABLE", "MODEL", "THANOSQL DATASET"]


def test_inspect_a_table(kernel: KernelSession) -> None:
    code = "SELECT * FROM mnist_test"
    reply = inspect(kernel, code, code.index("mnist_test") + 3)
    assert reply["found"]
    text = reply["data"]["text/plain"]
    assert text.startswith("table mnist_test") and "16 rows" in text
    assert "image_path" in text and "label" in text
    assert f"{MODEL}_simclr" in text and f"embeddings of model {MODEL}, length 128" in text
    assert "**table mnist_test**" in reply["data"]["text/markdown"]


def test_inspect_a_model(kernel: KernelSession) -> None:
    code = f"CONVERT USING {MODEL} AS SELECT * FROM mnist_test"
    text = inspect(kernel, code, code.index(MODEL) + 2)["data"]["text/plain"]
    for part in (f"model {MODEL}", "status: ready", "base model: SimCLR",
                 "trained on: SELECT * FROM mnist_train (16 rows)", "image size: 12 x 12",
                 "embedding length: 128", "loss per epoch:", "time taken:", "max_epochs=2"):
        assert part in text, part


def test_inspect_a_keyword_an_option_and_a_data_set(kernel: KernelSession) -> None:
    code = "BUILD MODEL m USING SimCLR OPTIONS (max_epochs=1) AS SELECT * FROM t"
    text = inspect(kernel, code, 2)["data"]["text/plain"]
    assert text.startswith("BUILD MODEL") and "Trains a self-supervised image model" in text
    assert "BUILD MODEL name USING SimCLR [OPTIONS (...)] AS query" in text
    text = inspect(kernel, code, code.index("max_epochs") + 2)["data"]["text/plain"]
    assert text.startswith("option max_epochs of BUILD MODEL")
    assert "passes over the data" in text and "an integer from 0 to 100000" in text
    assert "default 5" in text
    code = f"PRINT EMBEDDING USING {MODEL} OPTIONS (color_col='label') AS SELECT * FROM t"
    text = inspect(kernel, code, 8)["data"]["text/plain"]
    assert text.startswith("PRINT EMBEDDING") and "Draws a 2-D map (PCA)" in text
    text = inspect(kernel, code, code.index("color_col") + 2)["data"]["text/plain"]
    assert text.startswith("option color_col of PRINT EMBEDDING") and "legend" in text
    code = f"EVALUATE USING {MODEL} OPTIONS (k=4) AS SELECT * FROM mnist_test"
    text = inspect(kernel, code, 3)["data"]["text/plain"]
    assert text.startswith("EVALUATE") and "beside raw pixels" in text
    text = inspect(kernel, code, code.index("k=4"))["data"]["text/plain"]
    assert text.startswith("option k of EVALUATE") and "default 4" in text
    text = inspect(kernel, "GET THANOSQL DATASET mnist_data", 24)["data"]["text/plain"]
    assert text.startswith("data set mnist_data") and "MNIST" in text
    assert not inspect(kernel, "SELECT 1 + 2", 10)["found"]


def error_of(kernel: KernelSession, cell: str) -> tuple[str, str]:
    reply = kernel.execute(cell)
    assert reply.status == "error", reply.content
    return reply.content["ename"], reply.content["evalue"]


def test_a_sql_syntax_error_points_at_its_place(kernel: KernelSession) -> None:
    ename, text = error_of(kernel, "SELECT 1;\nSELEC * FROM mnist_train")
    assert ename == "DatabaseError"
    assert "(line 2, column 1)\n  SELEC * FROM mnist_train\n  ^" in text
    assert "Did you mean 'SELECT'?" in text and "LIST TABLE" not in text


def test_unknown_names_get_did_you_mean(kernel: KernelSession) -> None:
    ename, text = error_of(kernel, "SELECT * FROM mnist_tarin")
    assert "Did you mean 'mnist_train'?" in text and "(line 1, column 15)" in text
    ename, text = error_of(kernel, "SELECT labl FROM mnist_train")
    assert "Did you mean 'label'?" in text
    assert "Columns of mnist_train: image_path, label" in text
    ename, text = error_of(kernel, "CONVERT USING my_modl AS SELECT * FROM mnist_test")
    assert ename == "NotFoundError" and f"Did you mean '{MODEL}'?" in text
    ename, text = error_of(kernel, "GET THANOSQL DATASET mnist_dat")
    assert "Did you mean 'mnist_data'?" in text


def test_an_option_error_says_did_you_mean_first_then_the_options_unbroken(
        kernel: KernelSession) -> None:
    ename, text = error_of(kernel, "BUILD MODEL x USING SimCLR OPTIONS (max_epoch=1) "
                                   "AS SELECT * FROM mnist_train")
    assert ename == "OptionError"
    lines = text.splitlines()
    assert lines[1] == "Did you mean 'max_epochs'?" and lines[2].startswith("Valid options:")
    listed = " ".join(lines[2:lines.index("In the statement:")])
    assert "max_epochs, backbone, pretrained, batch_size" in listed and "noise, erase." in listed
    assert all(len(line) <= 88 for line in lines[2:])


def test_a_misspelt_thanosql_statement_is_not_sent_to_the_database(kernel: KernelSession
                                                                   ) -> None:
    ename, text = error_of(kernel, f"SERACH IMAGE images='imgs/1.png' USING {MODEL} "
                                   "AS SELECT * FROM mnist_test")
    assert ename == "ThanoSQLSyntaxError" and "Did you mean SEARCH IMAGE?" in text
    assert "refused" not in text


def test_a_stopped_build_marks_its_bar_stopped(kernel: KernelSession) -> None:
    reply = kernel.execute("BUILD MODEL long USING SimCLR OPTIONS (max_epochs=100000, "
                           "batch_size=8) AS SELECT * FROM mnist_train", interrupt_after=3.0)
    assert reply.content["ename"] == "KeyboardInterrupt"
    last = reply.of("update_display_data")[-1]["data"]["text/plain"]
    assert "stopped at " in last and " steps after " in last
    lines = [s["text"] for s in reply.of("stream")]
    assert lines[-1].startswith("BUILD MODEL long") and "stopped at " in lines[-1]


def test_python_m_thanosql_kernel_help() -> None:
    out = subprocess.run([sys.executable, "-m", "thanosql_kernel", "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith("usage: python -m thanosql_kernel install") and "IPython" not in out


def test_the_console_gets_progress_lines(monkeypatch) -> None:
    """Where updates in place are lost (jupyter console), long work still writes lines: one
    every 10 s, and one when it ends early."""
    from thanosql_kernel.frontend import Bars
    from thanosql_kernel.results import Progress

    sent: list[tuple[str, dict]] = []
    bars = Bars(lambda kind, content: sent.append((kind, content)))
    clock = iter([0.0, 0.1, 11.0, 11.5, 30.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    for done in (0, 1, 2, 3):
        bars.report(Progress("k", "CONVERT USING m", done, 10, "images", float(done)))
    bars.end("failed")
    lines = [content["text"] for kind, content in sent if kind == "stream"]
    assert len(lines) == 2
    assert lines[0].startswith("CONVERT USING m |") and " 20% 2/10 images" in lines[0]
    assert "failed at 3/10 images after 22s" in lines[1]
    kinds = [kind for kind, _ in sent if kind != "stream"]
    assert kinds == ["display_data", "update_display_data", "update_display_data",
                     "update_display_data"]
    assert "failed at 3/10" in sent[-2][1]["data"]["text/plain"]

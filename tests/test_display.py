"""MIME bundles: tables, vectors, progress and errors (pure, no kernel)."""

from __future__ import annotations

import base64

import numpy as np

from thanosql_kernel.display import (
    error_content,
    format_value,
    progress_text,
    to_bundles,
    to_messages,
    to_outputs,
)
from thanosql_kernel.errors import NotFoundError
from thanosql_kernel.results import Image, Images, Message, Progress, Table


def test_a_table_the_engine_cut_says_how_many_rows_it_has() -> None:
    table = Table(("i", "name"), tuple((i, f"n{i}") for i in range(5)), total=30)
    [bundle] = to_bundles(table)
    lines = bundle["text/plain"].splitlines()
    assert lines[0].split() == ["i", "name"] and len(lines) == 2 + 5 + 1
    assert lines[-1].startswith("30 rows × 2 columns (showing the first 5")
    assert bundle["text/html"].count("<tr>") == 1 + 5 and "30 rows × 2 columns" in \
        bundle["text/html"]
    [small] = to_bundles(Table(("a",), ((1,),)))
    assert "rows ×" not in small["text/plain"]


def test_html_is_escaped_and_values_are_short() -> None:
    [bundle] = to_bundles(Table(("x", "y"), tuple((v, 1) for v in (
        "<b>&</b>", None, 0.1234567891, "long " * 30, "two\nlines"))))
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in bundle["text/html"] and "<b>&" not in \
        bundle["text/html"]
    assert "NULL" in bundle["text/plain"] and "0.123457" in bundle["text/plain"]
    assert "…" in bundle["text/plain"] and "two lines" in bundle["text/plain"]


def test_vectors_are_shown_compactly() -> None:
    blob = np.array([0.125, -0.5, 0.25, 1.0], dtype="<f4").tobytes()
    assert format_value(blob, vector=True) == "[0.12, -0.50, 0.25, …] (4)"
    assert format_value(blob) == "<16 bytes>"
    [bundle] = to_bundles(Table(("v",), ((blob,),), vector_columns=frozenset({"v"})))
    assert "(4)" in bundle["text/plain"] and "b'" not in bundle["text/plain"]


def test_images_and_messages() -> None:
    images = Images((Image("a.png", "a.png  s=1", b"\x89PNG", width=64, height=32),
                     Image("b.png", "b.png", problem="no such file")), total=30)
    outputs = to_outputs(images)
    # the image as image/png at the size it is shown, then its caption printed under it:
    # JupyterLab shows a bundle's richest type only, jupyter console hands image/png to a
    # viewer and prints nothing of that bundle, and the conformance suite wants every display
    # of the cell to be the image
    (kind, data, metadata), caption = outputs[0], outputs[1]
    assert kind == "display" and set(data) == {"image/png", "text/plain"}
    assert base64.b64decode(data["image/png"]) == b"\x89PNG"
    assert data["text/plain"] == "[image a.png]"
    assert metadata == {"image/png": {"width": 64, "height": 32}}
    assert caption == ("printed", {"text/plain": "a.png  s=1"}, {})
    assert "no such file" in outputs[2][1]["text/plain"] and set(outputs[2][1]) == {"text/plain"}
    assert outputs[-1][1]["text/plain"].startswith("showing 2 of 30 images")
    assert len(outputs) == 4
    messages = to_messages(images, False, 3)
    assert [kind for kind, _ in messages] == ["display_data", "stream", "display_data",
                                              "display_data"]
    assert messages[1][1] == {"name": "stdout", "text": "a.png  s=1\n"}
    [(kind, content)] = to_messages(Message("Success"), True, 3)
    assert kind == "execute_result" and content["execution_count"] == 3
    assert to_bundles(Message("Success")) == [{"text/plain": "Success"}]
    assert to_bundles(None) == []


def test_progress_text() -> None:
    text = progress_text(Progress("k", "BUILD MODEL m", 5, 20, "steps", 10.0, "loss 1.2"))
    assert "25%" in text and "5/20 steps" in text and "30s left" in text and "loss 1.2" in text
    done = progress_text(Progress("k", "GET", 20, 20, "files", 65.0, finished=True))
    assert "100%" in done and "done in 1m05s" in done


def test_errors_have_no_python_frames() -> None:
    content = error_content(NotFoundError("There is no table 't'", hint="Tables: a, b."),
                            "SELECT * FROM t")
    assert content["ename"] == "NotFoundError"
    assert content["evalue"].splitlines() == ["There is no table 't'", "Tables: a, b.",
                                              "In the statement:", "  SELECT * FROM t"]
    assert len(content["traceback"]) == 1 and "File" not in content["traceback"][0]
    internal = error_content(ZeroDivisionError("division by zero"))
    assert internal["ename"] == "InternalError" and "ZeroDivisionError" in internal["evalue"]
    stopped = error_content(KeyboardInterrupt())
    assert stopped["ename"] == "KeyboardInterrupt"


def test_text_tables_line_up_with_wide_characters() -> None:
    from thanosql_kernel.display import display_width, table_text

    assert display_width("한글") == 4 and display_width("abc") == 3
    text = table_text(Table(("name", "n"), (("한글 이름", 1), ("abc", 22))))
    lines = text.splitlines()
    # the numbers are right-aligned, so every line ends at the same screen column
    assert [display_width(line) for line in lines] == [13, 13, 13, 13]
    assert display_width(lines[2][:lines[2].index("1")]) == 12


def test_long_text_is_shown_whole_in_html_and_in_a_text_tables_last_column() -> None:
    long = "MNIST handwritten digits, " * 5
    [bundle] = to_bundles(Table(("description", "n"), ((long, 1),)))
    assert long.strip() in bundle["text/html"] and "…" in bundle["text/plain"]
    [bundle] = to_bundles(Table(("n", "description"), ((1, long),)))
    assert long.strip() in bundle["text/plain"]
    assert bundle["text/plain"].splitlines()[1] == "-  " + "-" * 60   # the rule stays short

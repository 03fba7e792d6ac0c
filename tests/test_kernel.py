"""The real kernel over the Jupyter protocol, started from the installed kernelspec."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

import jupyter_kernel_test
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from .conftest import KernelSession

#: an image every checkout has, for PRINT IMAGE
LOGO = Path(__file__).resolve().parents[1] / "thanosql_kernel" / "kernelspec" / "logo-64x64.png"
CSV = "image_path,filename,label\na/1.jpg,1.jpg,5\na/2.jpg,2.jpg,0\n"


def test_kernelspec_is_installed_for_this_python() -> None:
    spec = KernelSpecManager().get_kernel_spec("thanosql")
    assert spec.display_name == "ThanoSQL" and spec.language == "thanosql"
    assert spec.argv[:3] == [sys.executable, "-m", "thanosql_kernel"]
    # debugpy, which ipykernel probes, would otherwise warn about frozen modules on stderr
    assert spec.env == {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    logos = {p.name for p in Path(spec.resource_dir).iterdir()}
    assert {"logo-32x32.png", "logo-64x64.png", "kernel.json"} <= logos


def test_install_command_with_prefix(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "thanosql_kernel", "install", "--prefix",
                          str(tmp_path)], capture_output=True, text=True, check=True).stdout
    folder = tmp_path / "share" / "jupyter" / "kernels" / "thanosql"
    assert str(folder) in out and (folder / "kernel.json").exists()


def test_jupyter_console_prints_print_images_captions(tmp_path: Path) -> None:
    """A console cannot show an image inline: it prints the image's text and its caption
    (given an image handler, the default, it hands the PNG to a viewer instead and still
    prints the caption, which is printed text of its own)."""
    import shutil

    shutil.copy(LOGO, tmp_path / "logo.png")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter")), "console", "--kernel", "thanosql",
         "--simple-prompt", "--ZMQTerminalInteractiveShell.image_handler=None"],
        input="PRINT IMAGE AS SELECT 'logo.png' AS image_path, 7 AS n\n", cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"})
    assert "[image logo.png]" in done.stdout and "logo.png  n=7" in done.stdout, done.stdout
    assert done.stdout.index("[image logo.png]") < done.stdout.index("logo.png  n=7")


def test_kernel_info(kernel: KernelSession) -> None:
    kernel.kc.kernel_info()
    reply = kernel.kc.get_shell_msg(timeout=10)
    info = reply["content"]["language_info"]
    assert info["name"] == "thanosql" and info["mimetype"] == "text/x-thanosql"
    assert info["file_extension"] == ".sql"
    # JupyterLab finds the language by name (this package's extension), else by MIME: SQL
    assert info["codemirror_mode"] == {"name": "thanosql", "mime": "text/x-sql"}
    from pygments.lexers import get_lexer_by_name

    lexer = get_lexer_by_name(info["pygments_lexer"])
    tokens = dict((text, str(kind)) for kind, text in lexer.get_tokens("SEARCH IMAGE x"))
    assert tokens["SEARCH"] == tokens["IMAGE"] == "Token.Keyword"


def test_rows_come_back_as_one_execute_result_with_html(kernel: KernelSession) -> None:
    (kernel.cwd / "t.csv").write_text(CSV)
    reply = kernel.execute("COPY t OPTIONS (overwrite=True) FROM 't.csv'")
    assert reply.status == "ok" and reply.texts == ["Success: 2 rows copied into t"]
    reply = kernel.execute("SELECT *\nFROM t\nORDER BY label")
    [result] = reply.of("execute_result")
    assert result["data"]["text/plain"].splitlines()[0].split() == ["image_path", "filename",
                                                                   "label"]
    assert "<table>" in result["data"]["text/html"] and "<td>a/2.jpg</td>" in \
        result["data"]["text/html"]
    assert reply.of("display_data") == [] and reply.of("error") == []


def test_display_limit_says_how_many_rows(kernel: KernelSession) -> None:
    reply = kernel.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
                           "WHERE i < 30) SELECT i FROM c")
    text = reply.texts[-1]
    assert "30 rows × 1 columns" in text and len(text.splitlines()) == 2 + 20 + 1


def test_a_bad_setting_is_an_option_error_naming_the_variable(tmp_path: Path) -> None:
    session = KernelSession(tmp_path, {"THANOSQL_DISPLAY_LIMIT": "abc"})
    try:
        for _ in range(2):   # every cell says so, and the kernel stays up
            reply = session.execute("SELECT 1")
            assert reply.status == "error" and reply.content["ename"] == "OptionError"
            evalue = reply.content["evalue"]
            assert "THANOSQL_DISPLAY_LIMIT='abc'" in evalue, evalue
            assert "a whole number of rows from 1" in evalue and "default is 20" in evalue
    finally:
        session.close()


@pytest.mark.parametrize(("name", "value", "takes"), [
    ("THANOSQL_DISPLAY_LIMIT", "0", "from 1"),
    ("THANOSQL_EXACT_SEARCH_MAX_ROWS", "-5", "from 0"),
    ("THANOSQL_EXACT_SEARCH_MAX_ROWS", "2e6", "from 0"),
    ("THANOSQL_SEARCH_SHARD_ROWS", "0", "from 1"),
    ("THANOSQL_THREADS", "many", "'auto'"),
    ("THANOSQL_CHROMA_URL", "localhost:8000", "http://host:port"),
])
def test_every_setting_is_checked_before_anything_runs(name: str, value: str,
                                                      takes: str) -> None:
    from thanosql_kernel.errors import OptionError
    from thanosql_kernel.settings import VARIABLES, Settings

    with pytest.raises(OptionError) as caught:
        Settings.from_env(env={name: value})
    assert name in str(caught.value) and takes in str(caught.value)
    assert f"default is {VARIABLES[name].default}" in (caught.value.hint or "")


def test_several_statements_show_each_result(kernel: KernelSession) -> None:
    reply = kernel.execute("CREATE TABLE IF NOT EXISTS s (x INTEGER);\n"
                           "INSERT INTO s VALUES (1), (2);\nSELECT sum(x) AS total FROM s")
    assert reply.status == "ok"
    assert reply.texts[:2] == ["Success", "Success (2 rows affected)"]
    assert len(reply.of("execute_result")) == 1
    assert reply.of("execute_result")[0]["data"]["text/plain"].split() == ["total", "-----", "3"]


def test_errors_are_one_clean_message_and_the_kernel_stays_up(kernel: KernelSession) -> None:
    for cell, ename in [("COPY t FORM 'x'", "ThanoSQLSyntaxError"),
                        ("SELECT * FROM nowhere", "DatabaseError"),
                        ("COPY t FROM 'missing.csv'", "NotFoundError"),
                        ("COPY t2 OPTIONS (bogus=1) FROM 't.csv'", "OptionError")]:
        reply = kernel.execute(cell)
        assert reply.status == "error" and reply.content["ename"] == ename
        [error] = reply.of("error")
        assert error["ename"] == ename
        trace = "\n".join(error["traceback"])
        assert "Traceback" not in trace and 'File "' not in trace
        assert reply.texts == []
    reply = kernel.execute("SELECT * FROM nowhere")
    # the database's own words (SQLite: "no such table", PostgreSQL: "does not exist")
    assert "nowhere" in reply.content["evalue"] and ("no such table" in reply.content["evalue"]
                                                     or "does not exist" in reply.content["evalue"])
    assert "SELECT * FROM nowhere" in reply.content["evalue"]  # the statement it came from
    reply = kernel.execute("COPY t FORM 'x'")
    assert "line 1, column 8" in reply.content["evalue"] and "^" in reply.content["evalue"]
    assert kernel.execute("SELECT 1 AS ok").status == "ok"


def test_first_error_stops_the_cell(kernel: KernelSession) -> None:
    kernel.execute("CREATE TABLE IF NOT EXISTS stop_t (x INTEGER)")
    reply = kernel.execute("INSERT INTO stop_t VALUES (1); SELECT * FROM nowhere; "
                           "INSERT INTO stop_t VALUES (2)")
    assert reply.status == "error"
    assert kernel.execute("SELECT x FROM stop_t").texts[-1].split() == ["x", "-", "1"]


def test_unterminated_string_runs_nothing(kernel: KernelSession) -> None:
    kernel.execute("CREATE TABLE IF NOT EXISTS keep (x INTEGER); DELETE FROM keep; "
                   "INSERT INTO keep VALUES (7)")
    reply = kernel.execute("INSERT INTO keep VALUES (8); SELECT 'oops; DROP TABLE keep")
    assert reply.status == "error" and reply.content["ename"] == "ThanoSQLSyntaxError"
    assert kernel.execute("SELECT x FROM keep").texts[-1].split() == ["x", "-", "7"]


def test_interrupt_stops_a_long_query_and_the_kernel_stays_up(kernel: KernelSession) -> None:
    endless = ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) "
               "SELECT count(*) FROM c")
    reply = kernel.execute(endless, timeout=30, interrupt_after=1.0)
    assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt"
    assert [e["ename"] for e in reply.of("error")] == ["KeyboardInterrupt"]
    assert kernel.execute("SELECT 2 AS after").status == "ok"


def test_interrupt_while_another_connection_holds_the_write_lock(kernel: KernelSession) -> None:
    # another kernel's long CONVERT holds the lock: the stop button must not wait for it
    import sqlalchemy as sa

    kernel.execute("CREATE TABLE IF NOT EXISTS waits (x INTEGER)")
    blocker = sa.create_engine(kernel.database_url, poolclass=sa.pool.NullPool)
    with blocker.connect() as conn:
        if blocker.dialect.name == "sqlite":
            conn.connection.driver_connection.isolation_level = None
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("LOCK TABLE waits IN ACCESS EXCLUSIVE MODE")
        start = time.monotonic()
        reply = kernel.execute("INSERT INTO waits VALUES (1)", timeout=30, interrupt_after=1.0)
        took = time.monotonic() - start
        conn.rollback()
    blocker.dispose()
    assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt"
    assert took < 4, f"the interrupt took {took:.1f} s to end the wait"
    assert kernel.execute("INSERT INTO waits VALUES (2)").status == "ok"
    assert kernel.execute("SELECT x FROM waits").texts[-1].split() == ["x", "-", "2"]


def test_magic_lines_of_old_notebooks(kernel: KernelSession) -> None:
    reply = kernel.execute("%load_ext thanosql")
    assert reply.status == "ok" and reply.texts == []
    reply = kernel.execute("%thanosql API_TOKEN=abc")
    assert reply.status == "ok" and len(reply.texts) == 1 and "no API token" in reply.texts[0]


def test_completion_knows_tables_columns_and_keywords(kernel: KernelSession) -> None:
    kernel.execute("CREATE TABLE IF NOT EXISTS pictures (image_path TEXT, label INTEGER)")
    code = "SELECT ima FROM pic"
    for cursor, expected in ((len("SELECT ima"), "image_path"), (len(code), "pictures")):
        kernel.kc.complete(code, cursor)
        reply = kernel.kc.get_shell_msg(timeout=10)["content"]
        assert expected in reply["matches"]
        assert code[reply["cursor_start"]:reply["cursor_end"]] in ("ima", "pic")
    kernel.kc.complete("sea", 3)
    assert "search image" in kernel.kc.get_shell_msg(timeout=10)["content"]["matches"]


@pytest.mark.parametrize("code, status", [("SELECT *", "incomplete"), ("SELECT 'a", "incomplete"),
                                          ("SELECT (1,", "incomplete"),
                                          ("SELECT *\nFROM t;", "complete"),
                                          ("SELECT 1\n", "complete"), ("SELECT 1)", "invalid")])
def test_is_complete(kernel: KernelSession, code: str, status: str) -> None:
    kernel.kc.is_complete(code)
    reply = kernel.kc.get_shell_msg(timeout=10)
    assert reply["content"]["status"] == status


class ThanoSQLKernelTests(jupyter_kernel_test.KernelTests):
    """The protocol checks every kernel should pass (jupyter_kernel_test)."""

    kernel_name = "thanosql"
    language_name = "thanosql"
    file_extension = ".sql"
    code_inspect_sample = "SEARCH IMAGE"
    code_execute_result = [{"code": "SELECT 6 * 7 AS answer", "result": "answer\n------\n    42"}]
    code_display_data = [
        {"code": "SELECT 1 AS a; SELECT 2 AS b", "mime": "text/html"},
        {"code": f"PRINT IMAGE AS SELECT '{LOGO}' AS image_path", "mime": "image/png"}]
    complete_code_samples = ["SELECT 1;", "SELECT 1\n", "LIST TABLE;"]
    incomplete_code_samples = ["SELECT 'abc", "SELECT (1,", "/* a comment"]
    invalid_code_samples = ["SELECT 1)"]
    completion_samples = [{"text": "SELECT * FR", "matches": {"FROM"}},
                          {"text": "BUILD MODEL m USING simclr OPTIONS (max_ep",
                           "matches": {"max_epochs"}}]
    code_generate_error = "SELECT * FROM no_such_table"

    @classmethod
    def setUpClass(cls) -> None:
        import tempfile

        cls._tmp = tempfile.TemporaryDirectory()
        cls._old_env = os.environ.get("THANOSQL_WORKSPACE")
        os.environ["THANOSQL_WORKSPACE"] = cls._tmp.name
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        if cls._old_env is None:
            os.environ.pop("THANOSQL_WORKSPACE", None)
        else:
            os.environ["THANOSQL_WORKSPACE"] = cls._old_env
        cls._tmp.cleanup()


if __name__ == "__main__":
    unittest.main()


def test_a_stop_pressed_as_a_cell_ends_never_loses_its_reply(kernel: KernelSession) -> None:
    """The stop button pressed the moment a cell's result arrives: the press lands as the
    statements end, while ipykernel sends the reply, or after it. Every cell still gets its
    reply (before, a press after the statements and before the reply lost the reply, and
    the notebook waited for ever: a stop pressed as a BUILD finished), and the next runs."""
    for i in range(40):
        reply = kernel.execute(f"SELECT {i} AS n", timeout=20,
                               interrupt_on=lambda msg: msg["msg_type"] == "execute_result")
        assert reply.status == "ok" or reply.content["ename"] == "KeyboardInterrupt", \
            reply.content
    assert kernel.execute("SELECT 41 AS n").texts[-1].split()[-1] == "41"


def test_the_stop_button_raises_only_inside_a_cells_statements(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import signal
    import threading

    from thanosql_kernel.frontend import CellRunner, StopButton

    for key in ("THANOSQL_DATABASE_URL", "THANOSQL_CHROMA_URL", "THANOSQL_WORKSPACE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    stops = StopButton()
    shown: list[object] = []
    runner = CellRunner(lambda kind, content: None, logging.getLogger("test"))

    def press() -> None:
        os.kill(os.getpid(), signal.SIGINT)   # Python runs the handler before the next line

    def show_and_press(result: object, last: bool) -> None:
        shown.append(result)
        with stops.held():   # as the kernel sends a message: the stop waits for its end
            press()
            shown.append("sent")

    previous = signal.signal(signal.SIGINT, stops.handler)
    try:
        press()   # before the statements begin (nothing armed): it stops them as they begin
        failure = runner.run("SELECT 1 AS a", lambda r, last: shown.append(r), stops=stops)
        assert failure is not None and isinstance(failure.error, KeyboardInterrupt)
        assert shown == []
        stops.reset()   # the next request
        failure = runner.run("SELECT 1 AS a; SELECT 2 AS b", show_and_press, stops=stops)
        assert failure is not None and isinstance(failure.error, KeyboardInterrupt)
        assert len(shown) == 2 and shown[1] == "sent"   # the message went out, whole; no b
        press()   # after the statements: nothing to stop, and nothing raised here
        stops.reset()
        errors: list[BaseException] = []

        def send_elsewhere() -> None:   # as the warm-up thread sends its notice
            try:
                with stops.held():
                    press()   # while another thread sends: the main thread's statements stop
                    time.sleep(0.2)
            except BaseException as error:  # noqa: BLE001 - what the test looks for
                errors.append(error)

        thread = threading.Thread(target=send_elsewhere)

        def show_and_send_elsewhere(result: object, last: bool) -> None:
            shown.append(result)
            thread.start()
            thread.join()

        shown.clear()
        failure = runner.run("SELECT 4 AS d; SELECT 5 AS e", show_and_send_elsewhere,
                             stops=stops)
        assert failure is not None and isinstance(failure.error, KeyboardInterrupt)
        thread.join()
        assert len(shown) == 1 and errors == []
        stops.reset()
        shown.clear()
        assert runner.run("SELECT 3 AS c", lambda r, last: shown.append(r), stops=stops) is None
        assert len(shown) == 1
        press()
    finally:
        signal.signal(signal.SIGINT, previous)
        runner.close()

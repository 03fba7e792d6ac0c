"""Scaling out as the README says: its own commands start PostgreSQL and Chroma (as root and as
a normal user); two kernels in different folders share models through them; servers that
stop, restart or were set up wrong get plain errors, and the kernels heal by themselves."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import KernelSession, Reply
from .helpers import TINY, make_images

ROOT = Path(__file__).resolve().parent.parent
MODEL = "shared_model"
SIM = f"{MODEL}_simclr_similarity1"


def recipe(name: str) -> str:
    """The shell block of the README that follows ``<!-- recipe: name -->``, as written."""
    readme = (ROOT / "README.md").read_text()
    assert f"<!-- recipe: {name} -->" in readme, f"the README lost its {name} recipe"
    after = readme.split(f"<!-- recipe: {name} -->", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def with_values(block: str, **values: object) -> str:
    """The block with its first-line settings (folders, ports) set to this test's."""
    first, rest = block.split("\n", 1)
    for name, value in values.items():
        first, count = re.subn(rf"\b{name}=\S+", f"{name}={value}", first)
        assert count == 1, f"the recipe no longer sets {name} on its first line: {first!r}"
    return first + "\n" + rest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shell:
    """One bash session in the repository's folder, as a user would type the recipe; it
    stops at the first command that fails (bash -e), which fails the test."""

    def __init__(self, user: str | None = None) -> None:
        command = ["bash", "--norc", "-e"]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)

    def run(self, script: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        marker = f"__done_{time.monotonic_ns()}__"
        self.process.stdin.write(script + f"\necho {marker}\n")
        self.process.stdin.flush()
        lines = []
        for line in self.process.stdout:
            if line.strip() == marker:
                return "".join(lines)
            lines.append(line)
        raise AssertionError(f"the shell stopped at a failing command:\n{''.join(lines)}")

    def value(self, name: str) -> str:
        return self.run(f'printf "%s\\n" "${name}"').strip()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def wait_for_chroma(url: str) -> None:
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
            return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"the Chroma server at {url} did not come up")


def stop_line(word: str) -> str:
    [line] = [line for line in recipe("stop").splitlines() if word in line]
    return line


@dataclass
class Servers:
    """The servers one shell started from the README, and the environment it exported."""

    shell: Shell
    env: dict[str, str]

    def chroma_up(self, folder: Path, port: int) -> None:
        self.shell.run(with_values(recipe("chroma"), chromadata=folder, chromaport=port))
        wait_for_chroma(self.env["THANOSQL_CHROMA_URL"])


@contextmanager
def server_folder() -> Iterator[Path]:
    """A folder the postgres user may enter (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="thanosql-recipe-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """PostgreSQL and Chroma, started by root with the README's commands on free ports."""
    with server_folder() as work:
        yield from _servers(work)


def _servers(work: Path) -> Iterator[Servers]:
    shell = Shell()
    pg_port, chroma_port = free_port(), free_port()
    shell.run(with_values(recipe("postgresql"), pgdata=work / "pg", pgport=pg_port))
    found = Servers(shell, {"THANOSQL_DATABASE_URL": shell.value("THANOSQL_DATABASE_URL")})
    shell.run(with_values(recipe("chroma"), chromadata=work / "chroma", chromaport=chroma_port))
    found.env["THANOSQL_CHROMA_URL"] = shell.value("THANOSQL_CHROMA_URL")
    wait_for_chroma(found.env["THANOSQL_CHROMA_URL"])
    assert found.env["THANOSQL_DATABASE_URL"] == \
        f"postgresql+psycopg://thanosql@127.0.0.1:{pg_port}/thanosql"
    try:
        yield found
    finally:
        for word in ("pg_ctl", "kill"):
            shell.run(stop_line(word) + " || true")
        shell.close()


def shared_images(folder: Path) -> Path:
    """Images on a path both kernels reach (a shared data folder), listed with absolute paths."""
    csv = make_images(folder / "imgs", count=24)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + [f"{folder}/{line}" for line in lines[1:]]) + "\n")
    return csv


def ok(reply: Reply) -> Reply:
    assert reply.status == "ok", reply.content.get("evalue")
    return reply


def error(reply: Reply, ename: str, *words: str) -> str:
    assert reply.status == "error" and reply.content["ename"] == ename, reply.content
    for word in words:
        assert word in reply.content["evalue"], reply.content["evalue"]
    assert "Traceback" not in reply.content["evalue"]
    return reply.content["evalue"]


def test_two_kernels_in_different_folders_share_models_and_heal_after_server_faults(
        servers: Servers, tmp_path: Path) -> None:
    for folder in ("alice", "bob"):
        (tmp_path / folder).mkdir()
    with server_folder() as data:   # a short path, so tables show it whole
        _share_and_heal(servers, tmp_path, shared_images(data), f"{data}/imgs/9.png")


def _share_and_heal(servers: Servers, tmp_path: Path, csv: Path, query: str) -> None:
    alice = KernelSession(tmp_path / "alice", servers.env)
    # bob's SEARCH asks the Chroma server (exact search in memory stops at 0 rows)
    bob = KernelSession(tmp_path / "bob", {**servers.env, "THANOSQL_EXACT_SEARCH_MAX_ROWS": "0"})
    top5 = (f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='{query}' USING {MODEL} "
            f"AS SELECT * FROM imgs) ORDER BY {SIM} DESC LIMIT 5")
    try:
        ok(alice.execute(f"COPY imgs FROM '{csv}'"))
        ok(alice.execute(f"BUILD MODEL {MODEL} USING SimCLR {TINY.format(extra='')} "
                         "AS SELECT * FROM imgs", timeout=120))
        ok(alice.execute(f"CONVERT USING {MODEL} AS SELECT * FROM imgs", timeout=120))
        ranked = ok(alice.execute(top5)).texts

        # bob sees and uses alice's model: the same top 5, and a CONVERT of his own
        listing = ok(bob.execute("LIST MODEL")).texts[-1]
        assert MODEL in listing and "ready" in listing
        assert ok(bob.execute(top5)).texts == ranked and query in ranked[-1]
        ok(bob.execute(f"COPY imgs2 FROM '{csv}'"))
        ok(bob.execute(f"CONVERT USING {MODEL} AS SELECT * FROM imgs2", timeout=120))
        vectors = "SELECT image_path, {0}_simclr FROM {1} ORDER BY image_path"
        assert ok(bob.execute(vectors.format(MODEL, "imgs2"))).texts == \
            ok(alice.execute(vectors.format(MODEL, "imgs"))).texts
        # the model's files reached bob through the database, into his own cache
        assert not (tmp_path / "bob" / ".thanosql" / "models").exists()
        assert len(list((tmp_path / "bob" / ".thanosql" / "cache" / "models").iterdir())) == 1

        # the Chroma server stops: a plain error naming it; plain SQL works; then it is back
        chroma_url = servers.env["THANOSQL_CHROMA_URL"]
        chroma_folder = Path(servers.shell.value("chromadata"))
        servers.shell.run(stop_line("kill"))
        time.sleep(0.5)
        error(bob.execute(top5), "ServerError", chroma_url, "Start it")
        error(alice.execute(f"CONVERT USING {MODEL} AS SELECT * FROM imgs"), "ServerError",
              chroma_url)
        assert ok(alice.execute("SELECT COUNT(*) AS n FROM imgs")).texts[-1].split()[-1] == "24"
        servers.chroma_up(chroma_folder, int(chroma_url.rsplit(":", 1)[1]))
        assert ok(bob.execute(top5)).texts == ranked   # no kernel was restarted
        ok(alice.execute(f"CONVERT USING {MODEL} AS SELECT * FROM imgs", timeout=120))

        # PostgreSQL restarts under running kernels: nobody notices
        servers.shell.run('$as "$pgbin/pg_ctl" -D "$pgdata" -w -m fast restart >/dev/null')
        assert ok(alice.execute(top5)).texts == ranked
        assert ok(bob.execute(top5)).texts == ranked
        # PostgreSQL stopped: a plain error naming it (no password); started again: it works
        servers.shell.run(stop_line("pg_ctl"))
        database_url = servers.env["THANOSQL_DATABASE_URL"]
        error(alice.execute("SELECT 1"), "ServerError", database_url, "Start the database")
        [start] = [line for line in recipe("postgresql").splitlines() if " start" in line]
        servers.shell.run(start)
        assert ok(alice.execute("SELECT 1 AS one")).texts[-1].split()[-1] == "1"

        # alice rebuilds the model: bob's loaded copy is stale, and he notices
        unconverted = (f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='{query}' USING "
                       f"{MODEL} AS SELECT image_path FROM imgs) ORDER BY {SIM} DESC LIMIT 5")
        before = ok(bob.execute(unconverted)).texts
        ok(alice.execute(f"BUILD MODEL {MODEL} USING SimCLR OPTIONS (max_epochs=2, "
                         "batch_size=8, seed=7, overwrite=True) AS SELECT * FROM imgs",
                         timeout=120))
        after = ok(alice.execute(unconverted)).texts
        assert after != before
        assert ok(bob.execute(unconverted)).texts == after
    finally:
        alice.close()
        bob.close()


def test_a_kernel_in_another_folder_converts_searches_and_prints_a_table_loaded_here(
        servers: Servers, tmp_path: Path) -> None:
    """The tutorial's way, relative paths: Alice loads a CSV of them in her folder; Bob, in
    his, converts her table, searches it with her test image and prints it."""
    make_images(tmp_path / "alice" / "travel", count=24)
    (tmp_path / "bob").mkdir()
    alice = KernelSession(tmp_path / "alice", servers.env)
    bob = KernelSession(tmp_path / "bob", servers.env)
    sim = "traveller_simclr_similarity1"
    top = (f"SELECT image_path, {sim} FROM (SEARCH IMAGE images='travel/9.png' USING "
           f"traveller AS SELECT * FROM travel) ORDER BY {sim} DESC LIMIT 4")
    try:
        ok(alice.execute("COPY travel FROM 'travel.csv'"))
        ok(alice.execute(f"BUILD MODEL traveller USING SimCLR {TINY.format(extra='')} "
                         "AS SELECT * FROM travel", timeout=120))
        ok(bob.execute("CONVERT USING traveller AS SELECT * FROM travel", timeout=120))
        ranked = ok(bob.execute(top)).texts[-1]
        assert ranked.splitlines()[2].split() == ["travel/9.png", "1"], ranked
        assert ok(alice.execute(top)).texts[-1] == ranked
        shown = ok(bob.execute(f"PRINT IMAGE AS ({top})"))
        pngs = [m for m in shown.of("display_data") if "image/png" in m["data"]]
        assert len(pngs) == 4
        assert not any("no such file" in text for text in shown.texts)
        # what is missing in both folders is said with both
        (tmp_path / "alice" / "travel" / "3.png").unlink()
        said = error(bob.execute("CONVERT USING traveller AS SELECT * FROM travel"),
                     "NotFoundError", "travel/3.png")
        assert f"({tmp_path / 'alice'}), then in this notebook's folder ({tmp_path / 'bob'})" \
            in said
    finally:
        alice.close()
        bob.close()


def test_postgresql_stopped_in_the_middle_of_a_copy_is_a_server_error(servers: Servers,
                                                                      tmp_path: Path) -> None:
    """The server goes while COPY is sending its rows: the same ServerError as CONVERT and
    BUILD give, naming the URL; once it is back, nothing of that COPY is there."""
    rows = ["image_path,label"] + [f"imgs/{i}.png,{i}" for i in range(400_000)]
    (tmp_path / "big.csv").write_text("\n".join(rows) + "\n")
    kernel = KernelSession(tmp_path, servers.env)
    database_url = servers.env["THANOSQL_DATABASE_URL"]
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    inserting = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO%%big%%' "
                 "AND state = 'active'")
    try:
        msg_id = kernel.kc.execute("COPY big FROM 'big.csv'")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:   # the rows are on their way
            with engine.connect() as conn:
                if conn.exec_driver_sql(inserting).scalar():
                    break
            time.sleep(0.02)
        else:
            pytest.fail("COPY never sent its rows")
        servers.shell.run(stop_line("pg_ctl"))
        evalue = error(kernel.collect(msg_id, timeout=120), "ServerError", database_url,
                       "was lost")
        assert "refused" not in evalue
        [start] = [line for line in recipe("postgresql").splitlines() if " start" in line]
        servers.shell.run(start)
        error(kernel.execute("SELECT COUNT(*) FROM big"), "DatabaseError", "big")
        ok(kernel.execute("COPY big FROM 'big.csv'", timeout=120))
        assert ok(kernel.execute("SELECT COUNT(*) AS n FROM big")).texts[-1].split()[-1] == \
            "400000"
    finally:
        engine.dispose()
        kernel.close()


def test_a_database_that_is_not_utf8_is_refused_with_how_to_make_one(servers: Servers,
                                                                      tmp_path: Path) -> None:
    servers.shell.run('"$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U thanosql '
                      '-E SQL_ASCII --locale=C -T template0 ascii_db')
    url = servers.env["THANOSQL_DATABASE_URL"].rsplit("/", 1)[0] + "/ascii_db"
    kernel = KernelSession(tmp_path, {**servers.env, "THANOSQL_DATABASE_URL": url})
    try:
        message = error(kernel.execute("SELECT 1"), "ServerError", "SQL_ASCII", "UTF8",
                        "createdb -E UTF8")
        assert url in message
    finally:
        kernel.close()


def test_the_postgresql_recipe_also_works_as_a_normal_user(tmp_path: Path) -> None:
    """initdb refuses root: a normal user runs the same lines (here: the postgres user)."""
    with server_folder() as folder:
        shutil.chown(folder, "postgres")
        _as_a_normal_user(folder, tmp_path)


def _as_a_normal_user(folder: Path, tmp_path: Path) -> None:
    shell = Shell(user="postgres")
    port = free_port()
    try:
        assert shell.run("id -u").strip() != "0"
        shell.run(with_values(recipe("postgresql"), pgdata=folder / "pg", pgport=port))
        env = {"THANOSQL_DATABASE_URL": shell.value("THANOSQL_DATABASE_URL")}
        kernel = KernelSession(tmp_path, env)
        try:
            ok(kernel.execute("CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('한글')"))
            assert "한글" in ok(kernel.execute("SELECT a FROM t")).texts[-1]
        finally:
            kernel.close()
    finally:
        shell.run(stop_line("pg_ctl") + " || true")
        shell.close()

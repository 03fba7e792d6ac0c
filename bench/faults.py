"""Attack the kernel as issue 13's review did, and count the answers that are not clean.

Five categories, with the numbers of tries the review made:

  grammar   475  mutated tutorial and fixture statements, huge and odd cells
  hostile   275  SQL injection through names and options, path traversal, hostile files
  corrupt   492  43 kinds of corrupted state (model files and their cached copies, catalog
                 rows, the vector index, the database, the workspace), in turn, each time
                 with new random damage
  stop       23  the stop button at a random moment of COPY, BUILD, CONVERT, SEARCH, GET
  import     17  the stop button while a fresh kernel's first BUILD imports torch
  rows       12  CONVERT and BUILD over rows whose images are missing, not images, truncated,
                 with the default (stop, name them all) and with on_error='skip' (go on)
  disk       12  COPY, BUILD and CONVERT on a full disk (a small tmpfs in a private mount
                 namespace, root or unshare -r), four times, freed in between
  server      8  PostgreSQL stopped in the middle of COPY, CONVERT and BUILD (the README's
                 recipe, on free ports), started again

A try is clean when every statement ends in a result or one error of the kernel's own classes
(never another Python exception, a hang, or a dead kernel), the kernel answers the next
statement, and what a failed statement touched is as it was (a canary table, files outside the
workspace). Usage:

    python bench/faults.py [--only grammar,hostile,corrupt,stop,import,rows,disk,server]
                           [--scale 1.0]

A try of rows, disk or server is clean only when the answer is also the right one: all the
unreadable rows counted in one error (or left out with on_error='skip'); a full disk said as
such, naming the folder, every statement working again once space is freed, the index not set
aside; the database lost named as a ServerError, nothing kept, the statement working again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import KernelSession  # noqa: E402
from tests.helpers import make_images, unshare  # noqa: E402
from tests.test_faults import png_claiming  # noqa: E402
from thanosql_kernel.engine import Services, execute  # noqa: E402
from thanosql_kernel.errors import ThanoSQLError  # noqa: E402
from thanosql_kernel.settings import Settings  # noqa: E402
from thanosql_kernel.syntax import parse  # noqa: E402

TINY = "OPTIONS (max_epochs=1, batch_size=8, seed=1)"
SEARCH = ("SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING m AS SELECT * FROM "
          "imgs) ORDER BY m_simclr_similarity1 DESC LIMIT 3")
HANG_S = 60


class Hang(Exception):
    """A statement that ran past ``HANG_S``."""


@contextlib.contextmanager
def deadline(seconds: int = HANG_S) -> Iterator[None]:
    def ring(*_: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Tally:
    """Tries and not-clean answers per category, with the first few failures kept."""

    def __init__(self) -> None:
        self.tried: dict[str, int] = {}
        self.bad: dict[str, list[str]] = {}

    def add(self, category: str, problem: str | None) -> None:
        self.tried[category] = self.tried.get(category, 0) + 1
        if problem is not None:
            self.bad.setdefault(category, []).append(problem)


def run_cell(ctx: Services, cell: str) -> str | None:
    """None when every statement gave a result or a ThanoSQLError; else what went wrong.

    A BUILD asked for more than 5 epochs is parsed but not run: a mutation that asks for a
    long training asks for something legitimate, and only makes the run long."""
    try:
        with deadline():
            for node in parse(cell):
                epochs = dict(getattr(node, "options", None) and node.options.items or ())
                if type(node).__name__ == "BuildModel" and not (
                        isinstance(epochs.get("max_epochs", 1), int)
                        and epochs.get("max_epochs", 1) <= 5):
                    continue
                execute(node, ctx)
    except ThanoSQLError as error:
        if len(str(error)) > 5_000:
            return f"a {len(str(error)):,}-character message for {cell[:60]!r}"
        return None
    except Hang as error:
        return f"{error}: {cell[:80]!r}"
    except BaseException as error:  # noqa: BLE001 - this is what the bench counts
        return f"{type(error).__name__}: {str(error)[:100]} in {cell[:80]!r}"
    return None


def workspace(folder: Path, convert: bool = True) -> Services:
    """Images, tables, a model and a converted table: what the attacks run against."""
    make_images(folder / "imgs", count=16)
    ctx = Services.open(Settings.from_env(cwd=folder, env={}))
    cells = ["COPY imgs FROM 'imgs.csv'; COPY canary FROM 'imgs.csv'",
             f"BUILD MODEL m USING SimCLR {TINY} AS SELECT * FROM imgs"]
    if convert:
        cells.append("CONVERT USING m AS SELECT * FROM imgs")
    for cell in cells:
        problem = run_cell(ctx, cell)
        assert problem is None, problem
    return ctx


# -- grammar --------------------------------------------------------------------------------

def grammar_cases(count: int, rng: random.Random) -> list[str]:
    fixtures = [line for line in (ROOT / "tests" / "fixtures" / "identity.sql").read_text()
                .splitlines() if line and not line.startswith("--")]
    import nbformat

    tutorial = [c.source for c in nbformat.read(ROOT / "notebooks" / "image_search.ipynb",
                                                as_version=4).cells if c.cell_type == "code"]
    base = fixtures + tutorial
    pieces = ["(", ")", "[", "]", "'", '"', ",", ";", "=", "*", "%%", "--", "/*", "*/", "$$",
              "\x00", "한글", "\u202e", "AS", "OPTIONS", "SELECT", "USING", "9" * 40, "1e999",
              "None", "True", "-0", "NaN", "[[", "]]", "\\", "\n", "\t"]
    odd = ["LIST TABLE;" * 40_000, "SELECT 1;\n" * 20_000, "SELECT '" + "x" * 1_000_000 + "'",
           "BUILD MODEL m USING SimCLR OPTIONS (crop_scale=[" + ",".join(["1"] * 200_000) +
           "]) AS SELECT 1", "BUILD MODEL m USING SimCLR OPTIONS (crop_scale=" + "[" * 80 +
           "]" * 80 + ") AS SELECT 1", "", ";;;;", "\x00", "/*", "'", "((((", "))))",
           "%%thanosql", "%%thanosql\n%%thanosql", "%load_ext", "%thanosql", "%%bogus\nSELECT 1",
           "SEARCH IMAGE images=[] USING m AS SELECT 1", "PRINT IMAGE AS (LIST MODEL)",
           "SELECT * FROM (SEARCH IMAGE images='imgs/1.png' USING m AS (SEARCH IMAGE "
           "images='imgs/2.png' USING m AS SELECT * FROM imgs))",
           "COPY t FROM ''", "GET THANOSQL DATASET", "DROP MODEL IF EXISTS", "LIST",
           "CONVERT USING m AS (LIST TABLE)", "BUILD MODEL b USING SimCLR AS (LIST MODEL)"]
    cases = list(odd)
    while len(cases) < count:
        text = rng.choice(base)
        for _ in range(rng.randint(1, 5)):
            at = rng.randint(0, len(text))
            op = rng.choice(["insert", "delete", "replace", "repeat"])
            piece = rng.choice(pieces)
            if op == "insert":
                text = text[:at] + piece + text[at:]
            elif op == "delete":
                text = text[:at] + text[at + rng.randint(1, 8):]
            elif op == "replace":
                text = text[:at] + piece + text[at + 1:]
            else:
                text = text[:at] + text[at:at + 12] * rng.randint(2, 50) + text[at + 12:]
        cases.append(text)
    return cases[:count]


def grammar(tally: Tally, count: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = workspace(Path(tmp))
        for cell in grammar_cases(count, rng):
            tally.add("grammar", run_cell(ctx, cell))
        ctx.close()


# -- hostile input --------------------------------------------------------------------------

def hostile_files(folder: Path) -> dict[str, Path]:
    """Files no well-meaning user makes, each under imgs/ or beside the notebook."""
    imgs = folder / "imgs"
    made = {}
    png_claiming(imgs / "bomb.png", 50_000, 50_000)
    os.mkfifo(imgs / "pipe.png")
    (imgs / "empty.png").write_bytes(b"")
    (imgs / "truncated.png").write_bytes((imgs / "1.png").read_bytes()[:40])
    (imgs / "text.png").write_text("not an image")
    (imgs / "folder.png").mkdir()
    (imgs / "loop.png").symlink_to(imgs / "loop.png")
    (imgs / "outside.png").symlink_to("/etc/hostname")
    (folder / "bad.xlsx").write_bytes(b"PK\x03\x04 not a zip")
    (folder / "bad.parquet").write_bytes(b"PAR1 nonsense")
    (folder / "latin1.csv").write_bytes("image_path\ncaf\xe9.png\n".encode("latin-1"))
    (folder / "empty.csv").write_text("")
    (folder / "dupes.csv").write_text("a,A\n1,2\n")
    (folder / "wide.csv").write_text(",".join(f"c{i}" for i in range(3000)) + "\n" +
                                     ",".join("1" for _ in range(3000)) + "\n")
    (folder / "records.json").write_text('{"not": "records"')
    (folder / "pickle.pt").write_bytes(b"\x80\x04cos\nsystem\n(S'touch /tmp/pwned'\ntR.")
    for name in ("bomb", "pipe", "empty", "truncated", "text", "folder", "loop", "outside"):
        made[name] = imgs / f"{name}.png"
    return made


def hostile_cases(count: int) -> list[str]:
    injections = ["x'; DROP TABLE canary; --", 'x"; DROP TABLE canary; --', "canary --",
                  "image_path FROM canary --", "1); DROP TABLE canary; (", "' OR '1'='1",
                  "%s%s%s", "{0}", "$$; DROP TABLE canary; $$", "thanosql_models",
                  "../../etc/passwd", "/etc/passwd", "~/../../root", "\x00", "a" * 5000]
    templates = [
        "CONVERT USING m OPTIONS (table_name='{p}') AS SELECT * FROM imgs",
        "CONVERT USING m OPTIONS (result_col='{p}') AS SELECT * FROM imgs",
        "CONVERT USING m OPTIONS (image_col='{p}') AS SELECT * FROM imgs",
        "SEARCH IMAGE images='{p}' USING m AS SELECT * FROM imgs",
        "SEARCH IMAGE USING m OPTIONS (search_input='{p}', emb_col='{p}') AS SELECT * FROM imgs",
        "SEARCH IMAGE USING m OPTIONS (search_input='imgs/1.png', result_col='{p}') "
        "AS SELECT * FROM imgs",
        "PRINT IMAGE OPTIONS (image_col='{p}') AS SELECT * FROM imgs",
        "PRINT IMAGE AS SELECT '{p}' AS image_path",
        "COPY t_{n} FROM '{p}'",
        "BUILD MODEL b_{n} USING SimCLR OPTIONS (image_col='{p}', max_epochs=1) "
        "AS SELECT * FROM imgs",
        "BUILD MODEL b_{n} USING SimCLR OPTIONS (label_col='{p}', max_epochs=1) "
        "AS SELECT * FROM imgs",
        "SELECT * FROM (LIST MODEL) WHERE name = '{p}'",
        "GET THANOSQL DATASET mnist_data OPTIONS (overwrite={p!r})",
        "DROP MODEL IF EXISTS {w}", "BUILD MODEL {w} USING SimCLR AS SELECT * FROM imgs",
        "COPY {w} FROM 'imgs.csv'",
    ]
    files = ["imgs/bomb.png", "imgs/pipe.png", "imgs/empty.png", "imgs/truncated.png",
             "imgs/text.png", "imgs/folder.png", "imgs/loop.png", "imgs/outside.png",
             "bad.xlsx", "bad.parquet", "latin1.csv", "empty.csv", "dupes.csv", "wide.csv",
             "records.json", "pickle.pt", "/dev/zero", "/dev/null", "/proc/self/mem"]
    cases = []
    for n, (template, payload) in enumerate(
            (t, p) for p in injections + files for t in templates):
        word = "".join(c for c in payload if c.isalnum() or c in "_./")[:40] or "x"
        cases.append(template.format(p=payload.replace("'", "''"), n=n, w=word))
    # a file to search among: each hostile file as a row of a table
    for name in ("bomb", "pipe", "empty", "truncated", "text", "folder", "loop", "outside"):
        for statement in ("CONVERT USING m AS SELECT * FROM t_{0}",
                          "SEARCH IMAGE images='imgs/1.png' USING m AS SELECT * FROM t_{0}",
                          "PRINT IMAGE AS SELECT * FROM t_{0}",
                          "BUILD MODEL x_{0} USING SimCLR OPTIONS (max_epochs=1) "
                          "AS SELECT * FROM t_{0}"):
            cases.append(f"COPY t_{name} OPTIONS (overwrite=True) FROM 'imgs.csv'; "
                         f"INSERT INTO t_{name} (image_path, label) "
                         f"VALUES ('imgs/{name}.png', 0); " + statement.format(name))
    random.Random(13).shuffle(cases)
    return cases[:count]


def hostile(tally: Tally, count: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "notebook"
        folder.mkdir()
        ctx = workspace(folder)
        hostile_files(folder)
        outside = sorted(p.name for p in Path(tmp).iterdir())
        canary = ctx_rows(ctx, "SELECT COUNT(*) FROM canary")
        for cell in hostile_cases(count):
            problem = run_cell(ctx, cell)
            if problem is None and ctx_rows(ctx, "SELECT COUNT(*) FROM canary") != canary:
                problem = f"the canary table changed after {cell[:60]!r}"
            if problem is None and sorted(p.name for p in Path(tmp).iterdir()) != outside:
                problem = f"a file appeared outside the notebook's folder after {cell[:60]!r}"
            if problem is None and Path("/tmp/pwned").exists():
                problem = "a planted pickle ran"
            tally.add("hostile", problem)
        ctx.close()


def ctx_rows(ctx: Services, sql: str) -> object:
    try:
        with ctx.store.begin() as tx:
            return ctx.store.read(tx, sql).rows
    except ThanoSQLError as error:
        return str(error)


# -- corrupted state ------------------------------------------------------------------------

def _garble(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\xff"
    out = bytearray(data)
    for _ in range(rng.randint(1, 20)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def corruptions() -> list[tuple[str, Callable[[Path, random.Random], None]]]:
    """(name, corrupt(workspace folder, rng)) for each kind of corrupted state."""
    def sql(statement: str, *params: object) -> Callable[[Path, random.Random], None]:
        def apply(folder: Path, rng: random.Random) -> None:
            db = sqlite3.connect(folder / ".thanosql" / "thanosql.db")
            with db:
                db.execute(statement.replace("RAND", str(rng.randint(1, 10**6))), params)
            db.close()
        return apply

    def chunk(file: str, how: str) -> Callable[[Path, random.Random], None]:
        def apply(folder: Path, rng: random.Random) -> None:
            db = sqlite3.connect(folder / ".thanosql" / "thanosql.db")
            where = (f"digest = (SELECT digest FROM thanosql_models WHERE name = 'm') "
                     f"AND file = '{file}'")
            with db:
                if how == "delete":
                    db.execute(f"DELETE FROM thanosql_model_files WHERE {where}")
                elif how == "text":
                    db.execute(f"UPDATE thanosql_model_files SET data = 'text' WHERE {where}")
                else:
                    rows = db.execute(f"SELECT seq, data FROM thanosql_model_files WHERE "
                                      f"{where}").fetchall()
                    for seq, data in rows:
                        new = data[:len(data) // 2] if how == "truncate" else _garble(data, rng)
                        db.execute(f"UPDATE thanosql_model_files SET data = ? WHERE {where} "
                                   "AND seq = ?", (new, seq))
            db.close()
        return apply

    def cached(file: str, how: str) -> Callable[[Path, random.Random], None]:
        def apply(folder: Path, rng: random.Random) -> None:
            for copy in (folder / ".thanosql" / "cache" / "models").glob(f"*/{file}"):
                if how == "delete":
                    copy.unlink()
                elif how == "truncate":
                    copy.write_bytes(copy.read_bytes()[:len(copy.read_bytes()) // 2])
                elif how == "folder":
                    copy.unlink()
                    copy.mkdir()
                else:
                    copy.write_bytes(_garble(copy.read_bytes(), rng))
        return apply

    def chroma(how: str) -> Callable[[Path, random.Random], None]:
        def apply(folder: Path, rng: random.Random) -> None:
            index = folder / ".thanosql" / "chroma"
            if how == "sqlite":
                db = index / "chroma.sqlite3"
                db.write_bytes(_garble(db.read_bytes(), rng)[:rng.randint(100, 50_000)])
            elif how == "segments":
                for path in index.glob("*/*"):
                    path.write_bytes(_garble(path.read_bytes(), rng))
            elif how == "no segments":
                for path in index.iterdir():
                    if path.is_dir():
                        shutil.rmtree(path)
            elif how == "a file":
                shutil.rmtree(index)
                index.write_text("not a folder")
        return apply

    def workspace_file(part: str) -> Callable[[Path, random.Random], None]:
        def apply(folder: Path, rng: random.Random) -> None:
            target = folder / ".thanosql" / part
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("not what it should be")
        return apply

    def database(how: str) -> Callable[[Path, random.Random], None]:
        def apply(folder: Path, rng: random.Random) -> None:
            db = folder / ".thanosql" / "thanosql.db"
            for extra in ("-wal", "-shm"):
                Path(str(db) + extra).unlink(missing_ok=True)
            data = db.read_bytes()
            if how == "truncate":
                db.write_bytes(data[:rng.randint(4096, max(4097, len(data) - 1))])
            else:
                start = rng.randrange(4096, len(data))
                db.write_bytes(data[:start] + os.urandom(rng.randint(1, 4096)) +
                               data[start + 4096:])
        return apply

    kinds: list[tuple[str, Callable[[Path, random.Random], None]]] = []
    for file in ("weights.pt", "model.json", "card.json"):
        for how in ("garble", "truncate", "delete", "text"):
            kinds.append((f"stored {file}: {how}", chunk(file, how)))
        for how in ("garble", "truncate", "delete", "folder"):
            kinds.append((f"cached {file}: {how}", cached(file, how)))
    kinds += [
        ("catalog: card not JSON", sql("UPDATE thanosql_models SET card = '{RAND'")),
        ("catalog: card a list", sql("UPDATE thanosql_models SET card = '[RAND]'")),
        ("catalog: files not JSON", sql("UPDATE thanosql_models SET files = 'RAND'")),
        ("catalog: files empty", sql("UPDATE thanosql_models SET files = '{}'")),
        ("catalog: digest wrong", sql("UPDATE thanosql_models SET digest = 'RAND'")),
        ("catalog: digest NULL", sql("UPDATE thanosql_models SET digest = NULL")),
        ("catalog: base model unknown", sql("UPDATE thanosql_models SET base_model = 'RAND'")),
        ("embeddings: collection missing",
         sql("UPDATE thanosql_embeddings SET collection = 'gone-RAND'")),
        ("embeddings: dim wrong", sql("UPDATE thanosql_embeddings SET dim = RAND")),
        ("embeddings: image_col wrong", sql("UPDATE thanosql_embeddings SET image_col = 'x'")),
        ("embeddings: row_count wrong", sql("UPDATE thanosql_embeddings SET row_count = RAND")),
        ("embeddings: vectors garbled",
         sql("UPDATE imgs SET m_simclr = randomblob(RAND % 700)")),
        ("chroma: sqlite garbled", chroma("sqlite")),
        ("chroma: segments garbled", chroma("segments")),
        ("chroma: segments missing", chroma("no segments")),
        ("chroma: a file", chroma("a file")),
        ("workspace: cache a file", workspace_file("cache")),
        ("database: truncated", database("truncate")),
        ("database: garbled page", database("garble")),
    ]
    return kinds


def corrupt(tally: Tally, count: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        workspace(template).close()
        kinds = corruptions()
        cells = ["LIST MODEL", "SELECT 1", SEARCH, SEARCH.replace("SELECT * FROM imgs",
                                                                "SELECT image_path FROM imgs"),
                 "PRINT IMAGE AS SELECT * FROM imgs LIMIT 2",
                 "CONVERT USING m AS SELECT * FROM imgs", "LIST TABLE"]
        for case in range(count):   # every kind in turn, each with new random damage
            seed, (name, apply) = case // len(kinds), kinds[case % len(kinds)]
            folder = Path(tmp) / f"case-{case}"
            shutil.copytree(template, folder, symlinks=True)
            problem = None
            try:
                apply(folder, random.Random(seed * 1000 + zlib.crc32(name.encode()) % 1000))
            except OSError:
                pass   # a corruption that could not be made here is still a try
            ctx = Services.open(Settings.from_env(cwd=folder, env={}))
            for cell in cells + ([f"BUILD MODEL n USING SimCLR {TINY} AS SELECT * FROM "
                                  "imgs"] if seed % 4 == 0 else []):
                problem = problem or run_cell(ctx, cell)
            if problem is not None:
                problem = f"{name}: {problem}"
            with contextlib.suppress(Exception):
                ctx.close()
            shutil.rmtree(folder, ignore_errors=True)
            tally.add("corrupt", problem)


# -- stops, through the kernel --------------------------------------------------------------

def stop(tally: Tally, count: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_images(folder / "imgs", count=64)
        rows = ["image_path,label"] + [f"imgs/{i % 64}.png,{i}" for i in range(300_000)]
        (folder / "big.csv").write_text("\n".join(rows) + "\n")
        kernel = KernelSession(folder)
        setup = ["COPY imgs FROM 'imgs.csv'; COPY big FROM 'imgs.csv'",
                 f"BUILD MODEL m USING SimCLR {TINY} AS SELECT * FROM imgs",
                 "CONVERT USING m AS SELECT * FROM imgs"]
        for cell in setup:
            assert kernel.execute(cell, timeout=300).status == "ok"
        work = [("COPY big OPTIONS (overwrite=True) FROM 'big.csv'",
                 "SELECT COUNT(*) AS n FROM big"),
                # another name: a rebuilt m would (rightly) refuse the column m made before
                ("BUILD MODEL m2 USING SimCLR OPTIONS (max_epochs=3, batch_size=8, seed=2, "
                 "overwrite=True) AS SELECT * FROM imgs", "SELECT name, status FROM (LIST MODEL)"),
                ("CONVERT USING m OPTIONS (batch_size=4) AS SELECT * FROM imgs",
                 "SELECT COUNT(*) AS n FROM imgs WHERE m_simclr IS NULL"),
                (SEARCH, "SELECT 1 AS one"),
                ("GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)", "SELECT 1 AS one")]
        try:
            for i in range(count):
                cell, check = work[i % len(work)]
                before = kernel.execute(check, timeout=60).texts
                reply = kernel.execute(cell, timeout=300, interrupt_after=rng.uniform(0.05, 2.0))
                problem = None
                if reply.status != "ok" and reply.content["ename"] not in (
                        "KeyboardInterrupt",):
                    problem = f"{reply.content['ename']}: {reply.content['evalue'][:100]}"
                after = kernel.execute(check, timeout=60)
                if after.status != "ok":
                    problem = problem or f"the next statement failed: {after.content['evalue']}"
                elif reply.status != "ok" and after.texts != before:
                    problem = problem or f"a stopped {cell.split()[0]} left a change"
                again = kernel.execute(SEARCH, timeout=120)
                if again.status != "ok":
                    problem = problem or f"SEARCH after the stop: {again.content['evalue']}"
                tally.add("stop", problem)
        finally:
            kernel.close()


def first_import(tally: Tally, count: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_images(folder / "imgs", count=16)
        for _ in range(count):
            kernel = KernelSession(folder)
            problem = None
            try:
                kernel.execute("COPY imgs OPTIONS (overwrite=True) FROM 'imgs.csv'")
                build = ("BUILD MODEL b USING SimCLR OPTIONS (max_epochs=1, batch_size=8, "
                         "overwrite=True) AS SELECT * FROM imgs")
                kernel.execute(build, timeout=300, interrupt_after=rng.uniform(0.1, 2.0))
                for cell in (build, "CONVERT USING b AS SELECT * FROM imgs",
                             SEARCH.replace("USING m", "USING b").replace(
                                 "m_simclr", "b_simclr")):
                    reply = kernel.execute(cell, timeout=300)
                    if reply.status != "ok":
                        problem = f"{cell.split()[0]}: {reply.content['evalue'][:120]}"
                        break
            except Exception as error:  # noqa: BLE001 - a dead kernel is what this counts
                problem = f"the kernel died: {type(error).__name__}: {error}"
            finally:
                with contextlib.suppress(Exception):
                    kernel.close()
            tally.add("import", problem)


# -- bad rows, a full disk, a server gone: through the kernel -------------------------------

def _reply_problem(reply: object, wanted: str | None, *words: str) -> str | None:
    """None when ``reply`` is an error of class ``wanted`` (None: a success) whose text holds
    every one of ``words``, with no traceback; else what it was."""
    status, content = reply.status, reply.content  # type: ignore[attr-defined]
    texts = reply.texts  # type: ignore[attr-defined]
    text = content.get("evalue", "") if status != "ok" else " ".join(texts)
    if wanted is None and status != "ok":
        return f"{content['ename']}: {text[:120]}"
    if wanted is not None and (status == "ok" or content["ename"] != wanted):
        return f"{'success' if status == 'ok' else content['ename']}: {text[:120]}"
    missing = [w for w in words if w not in text]
    if missing or "Traceback" in text:
        return f"{content.get('ename', 'ok')} without {missing}: {text[:120]}"
    return None


def bad_rows(tally: Tally, count: int, rng: random.Random) -> None:
    del rng
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_images(folder / "imgs", count=16)
        whole = (folder / "imgs" / "5.png").read_bytes()
        for n in (1, 2):
            (folder / "imgs" / f"cut{n}.png").write_bytes(whole[:len(whole) // (n + 1)])
            (folder / "imgs" / f"text{n}.png").write_text("not an image")
        kinds = {"missing": ["imgs/gone1.png", "imgs/gone2.png", "imgs/gone3.png"],
                 "not an image": ["imgs/text1.png", "imgs/text2.png"],
                 "truncated": ["imgs/cut1.png", "imgs/cut2.png"]}
        kernel = KernelSession(folder)
        try:
            assert kernel.execute("COPY imgs FROM 'imgs.csv'", timeout=120).status == "ok"
            assert kernel.execute(f"BUILD MODEL m USING SimCLR {TINY} AS SELECT * FROM imgs",
                                  timeout=300).status == "ok"
            tries = [(kind, statement, mode) for kind in kinds for statement in ("CONVERT", "BUILD")
                     for mode in ("error", "skip")]
            for i, (kind, statement, mode) in enumerate(tries[:count]):
                table = f"bad{i}"
                values = ", ".join(f"('{p}', 0)" for p in kinds[kind])
                kernel.execute(f"COPY {table} FROM 'imgs.csv'; "
                               f"INSERT INTO {table} (image_path, label) VALUES {values}")
                options = "" if mode == "error" else "OPTIONS (on_error='skip') "
                cell = (f"CONVERT USING m {options}AS SELECT * FROM {table}"
                        if statement == "CONVERT" else
                        f"BUILD MODEL b{i} USING SimCLR "
                        f"{TINY[:-1] + ', on_error=' + repr('skip') + ')' if options else TINY} "
                        f"AS SELECT * FROM {table}")
                reply = kernel.execute(cell, timeout=300)
                bad = len(kinds[kind])
                if mode == "error":
                    problem = _reply_problem(reply, "NotFoundError" if kind == "missing"
                                             else "DataError",
                                             f"{len(kinds[kind])} of {16 + len(kinds[kind])} "
                                             "images cannot be read", kinds[kind][0])
                else:
                    problem = _reply_problem(reply, None)
                    if problem is None and statement == "CONVERT":
                        found = kernel.execute(
                            f"SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING m "
                            f"AS SELECT * FROM {table}) ORDER BY m_simclr_similarity1 DESC "
                            "LIMIT 40", timeout=120)
                        if found.status != "ok" or any(p in found.texts[-1] for p in kinds[kind]):
                            problem = f"SEARCH after a skipping CONVERT: {found.texts[-1:]}"
                    elif problem is None and "left out" not in " ".join(reply.texts):
                        problem = f"BUILD did not say it left {bad} out"
                tally.add("rows", problem)
        finally:
            kernel.close()
    _time_checks(200_000)


def _time_checks(rows: int) -> None:
    """How long CONVERT and BUILD take to answer over ``rows`` rows whose paths are all but
    1,000 missing (what the issue timed: the answer came after the first missing file)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_images(folder / "imgs", count=16)
        lines = ["image_path,label"] + [f"imgs/{i % 16}.png,0" if i < 1_000
                                        else f"imgs/x{i:06d}.jpg,0" for i in range(rows)]
        (folder / "many.csv").write_text("\n".join(lines) + "\n")
        kernel = KernelSession(folder)
        try:
            for cell in ("COPY imgs FROM 'imgs.csv'; COPY many FROM 'many.csv'",
                         f"BUILD MODEL m USING SimCLR {TINY} AS SELECT * FROM imgs"):
                assert kernel.execute(cell, timeout=300).status == "ok"
            for cell in ("CONVERT USING m AS SELECT * FROM many",
                         f"BUILD MODEL n USING SimCLR {TINY} AS SELECT * FROM many"):
                started = time.monotonic()
                reply = kernel.execute(cell, timeout=600)
                print(f"rows: {cell.split(' AS')[0]} over {rows:,} rows ({rows - 1_000:,} "
                      f"missing) answered in {time.monotonic() - started:.1f} s: "
                      f"{reply.content.get('evalue', 'ok')[:150]!r}", flush=True)
        finally:
            kernel.close()


DISK_MB = 48
DISK_LEFT = 160_000


def full_disk(tally: Tally, count: int, rng: random.Random) -> None:
    """Re-run this bench inside a private mount namespace on a small tmpfs."""
    del rng
    with tempfile.TemporaryDirectory() as tmp:
        mount = Path(tmp) / "disk"
        mount.mkdir()
        script = (f"mount -t tmpfs -o size={DISK_MB}m tmpfs {mount} && exec {sys.executable} "
                  f"{Path(__file__).resolve()} --inside-disk {mount} --scale {count}")
        import subprocess

        done = subprocess.run([*unshare("m"), "sh", "-c", script], capture_output=True, text=True,
                              timeout=1800, env={**os.environ,
                                                 "PYTHONPATH": os.environ.get("PYTHONPATH",
                                                                              str(ROOT))})
        print(done.stderr[-2000:] if done.returncode else "", end="")
        for line in done.stdout.splitlines():
            if line.startswith("TRY "):
                outcome = line[4:]
                tally.add("disk", None if outcome == "clean" else outcome)
            else:
                print(line)


def _inside_disk(home: Path, count: int) -> None:
    """In the namespace: fill the tmpfs, try COPY, BUILD and CONVERT, free it, check them."""
    make_images(home / "imgs", count=32)
    rows = ["image_path,label"] + [f"imgs/{i % 32}.png,{i}" for i in range(60_000)]
    (home / "big.csv").write_text("\n".join(rows) + "\n")
    workspace = home / ".thanosql"
    kernel = KernelSession(home)
    cells = {"COPY": "COPY big OPTIONS (overwrite=True) FROM 'big.csv'",
             "BUILD": "BUILD MODEL m2 USING SimCLR OPTIONS (max_epochs=1, batch_size=8, seed=1, "
                      "overwrite=True) AS SELECT * FROM imgs",
             "CONVERT": "CONVERT USING m AS SELECT * FROM imgs"}
    try:
        for cell in ("COPY imgs FROM 'imgs.csv'",
                     f"BUILD MODEL m USING SimCLR {TINY} AS SELECT * FROM imgs",
                     "CONVERT USING m AS SELECT * FROM imgs"):
            assert kernel.execute(cell, timeout=300).status == "ok", cell
        tried = 0
        while tried < count:
            ballast = home / "ballast"
            free = shutil.disk_usage(home).free
            with open(ballast, "wb") as file:
                os.posix_fallocate(file.fileno(), 0, max(1, free - DISK_LEFT))
            said = {}
            for name, cell in cells.items():
                said[name] = _reply_problem(kernel.execute(cell, timeout=300), "DiskFullError",
                                            "disk is full", str(workspace))
            damaged = list(workspace.glob("chroma.damaged-*"))
            ballast.unlink()
            for name, cell in cells.items():
                if tried >= count:
                    break
                problem = said[name]
                again = kernel.execute(cell, timeout=300)
                if problem is None and again.status != "ok":
                    problem = f"after space was freed: {again.content.get('evalue', '')[:120]}"
                if problem is None and damaged:
                    problem = f"the index was set aside as damaged ({len(damaged)} folders)"
                print(f"TRY {'clean' if problem is None else name + ': ' + problem}", flush=True)
                tried += 1
    finally:
        kernel.close()


def server_gone(tally: Tally, count: int, rng: random.Random) -> None:
    from tests.test_scale_out import _servers, recipe, server_folder, stop_line

    with server_folder() as work, tempfile.TemporaryDirectory() as tmp:
        started = _servers(work)   # held: its clean-up stops the servers
        servers = next(started)
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        make_images(folder / "imgs", count=64)
        rows = ["image_path,label"] + [f"imgs/{i % 64}.png,{i}" for i in range(300_000)]
        (folder / "big.csv").write_text("\n".join(rows) + "\n")
        url = servers.env["THANOSQL_DATABASE_URL"]
        [start] = [line for line in recipe("postgresql").splitlines() if " start" in line]
        kernel = KernelSession(folder, servers.env)
        work_cells = ["COPY big OPTIONS (overwrite=True) FROM 'big.csv'",
                      "CONVERT USING m OPTIONS (batch_size=4) AS SELECT * FROM imgs",
                      "BUILD MODEL m2 USING SimCLR OPTIONS (max_epochs=4, batch_size=8, seed=2, "
                      "overwrite=True) AS SELECT * FROM imgs"]
        try:
            for cell in ("COPY imgs FROM 'imgs.csv'",
                         f"BUILD MODEL m USING SimCLR {TINY} AS SELECT * FROM imgs",
                         "CONVERT USING m AS SELECT * FROM imgs"):
                assert kernel.execute(cell, timeout=300).status == "ok", cell
            for i in range(count):
                cell = work_cells[i % len(work_cells)]
                msg_id = kernel.kc.execute(cell)
                time.sleep(rng.uniform(0.8, 1.6))
                servers.shell.run(stop_line("pg_ctl"))
                reply = kernel.collect(msg_id, timeout=300)
                problem = None if reply.status == "ok" else _reply_problem(
                    reply, "ServerError", url, "was kept")
                servers.shell.run(start)
                again = kernel.execute(cell, timeout=300)
                if problem is None and again.status != "ok":
                    problem = f"after the restart: {again.content.get('evalue', '')[:120]}"
                tally.add("server", problem)
        finally:
            kernel.close()
            started.close()


CATEGORIES = {"grammar": (grammar, 475), "hostile": (hostile, 275), "corrupt": (corrupt, 492),
              "stop": (stop, 23), "import": (first_import, 17), "rows": (bad_rows, 12),
              "disk": (full_disk, 12), "server": (server_gone, 8)}
LABELS = {"grammar": "grammar fuzzing (mutated tutorial statements, huge and odd cells)",
          "hostile": "injection, path traversal, hostile files",
          "corrupt": "corrupted state (model files, cache, catalog rows, index, database, "
                     "workspace)",
          "stop": "stop (interrupt) at random moments",
          "import": "stop while the first AI statement of a kernel loads torch",
          "rows": "rows whose images are missing, not images, truncated (CONVERT, BUILD)",
          "disk": "a full disk under COPY, BUILD, CONVERT; then freed",
          "server": "PostgreSQL stopped in the middle of COPY, CONVERT, BUILD"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CATEGORIES))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument("--inside-disk", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_disk is not None:   # the disk category, in its namespace
        _inside_disk(args.inside_disk, int(args.scale))
        return
    tally = Tally()
    for name in args.only.split(","):
        run, count = CATEGORIES[name]
        started = time.monotonic()
        try:
            run(tally, max(1, round(count * args.scale)), random.Random(13))
        except Exception:  # noqa: BLE001 - the bench reports and goes on to the next category
            traceback.print_exc()
        print(f"{name}: {tally.tried.get(name, 0)} tried in {time.monotonic() - started:.0f} s",
              flush=True)
    print("\n| attack | tried | not clean |\n|---|---|---|")
    for name in args.only.split(","):
        print(f"| {LABELS[name]} | {tally.tried.get(name, 0)} | {len(tally.bad.get(name, []))} |")
    for name, problems in tally.bad.items():
        print(f"\n{name}: {len(problems)} not clean, e.g.")
        for problem in problems[:8]:
            print(f"  - {problem}")


if __name__ == "__main__":
    main()

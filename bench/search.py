"""SEARCH latency through the engine at 1k-1M rows, beside numpy brute force; CONVERT speed.

For each table size the table gets synthetic unit vectors (the size is what matters) in the
embedding column, indexed the way CONVERT indexes them; the query is the one a user writes:

    SELECT image_path, m_simclr_similarity1 FROM (SEARCH IMAGE images='q.jpg' USING m
        AS SELECT * FROM t) ORDER BY m_simclr_similarity1 DESC LIMIT 10

and the second generation with top_k=10, and the first with a new query image each time
(so no remembered query embedding helps). Beside it, in the same run, numpy brute force
(exact cosine top 10 over the same float32 vectors in memory), the compact copy's scan
alone with the bytes it reads and the GB/s that makes (against the machine's memory
bandwidth, a numpy copy), the recall@10 of the engine's answer (one query image; 1,000
random query vectors through the exact path), the first search's seconds (it makes the
compact copy from the column and stores it in the workspace) and the first search of a new
kernel on the same workspace (it reads that stored copy) beside one plain read of the
column, and the process's resident memory. Filtered searches (a WHERE keeping 10 %, 1 % or
0.1 % of the rows, on an indexed column and on an expression no index serves: recall
against brute force over the rows kept) beside the WHERE alone as a plain SQL cell.
CONVERT is measured end to end on real JPEGs (decode, embed, write, index) in a child
process, whose peak RSS is reported.

    python bench/search.py                      # 1k, 10k, 100k rows; CONVERT of 20k images
    python bench/search.py --sizes 100000,1000000 --ten-million --convert 0
    python bench/search.py --sizes 1000,10000,100000,1000000 --convert 100000
    .ci/servers .venv/bin/python bench/search.py --backend both --sizes 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from thanosql_kernel.engine import Services, execute  # noqa: E402
from thanosql_kernel.settings import Settings  # noqa: E402
from thanosql_kernel.syntax import parse  # noqa: E402

SIM = "m_simclr_similarity1"
QUERY_IMAGE = "tutorial_data/mnist_data/test/923.jpg"


def run(ctx: Services, cell: str):
    result = None
    for node in parse(cell):
        result = execute(node, ctx)
    return result


def prepare(folder: Path, dim: int, env: dict[str, str]) -> Services:
    from thanosql_kernel.datasets import get_dataset

    get_dataset("mnist_data").write(folder, overwrite=True)
    ctx = Services.open(Settings.from_env(cwd=folder, env=env))
    run(ctx, "COPY mnist_train FROM 'tutorial_data/mnist_data/mnist_train.csv'")
    run(ctx, f"BUILD MODEL m USING SimCLR OPTIONS (max_epochs=1, embedding_dim={dim}) "
             "AS SELECT * FROM mnist_train")
    return ctx


def synthetic_table(ctx: Services, name: str, n: int, dim: int, rng: np.random.Generator,
                    build_index: bool = True) -> np.ndarray:
    """A table of n rows with random unit vectors in m_simclr, indexed like CONVERT does.

    Without ``build_index`` the catalog records the column but the Chroma collection stays
    empty: SEARCH answers from the exact vectors in memory up to 2M rows and never reads it,
    and building an HNSW index of 1M vectors takes longer than the rest of the bench.
    """
    import sqlalchemy as sa

    from thanosql_kernel.storage import EmbeddingColumn, EmbeddingColumns
    from thanosql_kernel.vectors import to_blob

    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = sa.Table(name, sa.MetaData(), sa.Column("image_path", sa.Text),
                     sa.Column("label", sa.Integer), sa.Column("shard", sa.Integer),
                     sa.Column("m_simclr", sa.LargeBinary),
                     sa.Index(f"{name}_shard", "shard"))   # a column a user filters on
    ctx.catalog.ensure()
    with ctx.store.begin(write=True) as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        for start in range(0, n, 50_000):
            conn.execute(table.insert(), [
                {"image_path": f"synthetic/{i}.jpg", "label": i % 10, "shard": i % 1000,
                 "m_simclr": to_blob(vectors[i])} for i in range(start, min(n, start + 50_000))])
        ctx.catalog.prepare(conn, name, "m_simclr", "image_path")
        entry = EmbeddingColumn(name, "m_simclr", "m", "image_path", dim,
                                f"{name}__m_simclr__bench", n)
        if build_index:
            ctx.catalog.publish(conn, entry)
        else:   # recorded in the catalog only, its collection left empty
            EmbeddingColumns(ctx.store).put(conn, entry)
    return vectors


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1,
                                                   int(round(0.95 * (len(ordered) - 1))))]


def filters(ids: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """The filtered searches: (key, WHERE, the rows it keeps)."""
    number = ("CAST(replace(replace(image_path, 'synthetic/', ''), '.jpg', '') AS INTEGER)")
    return [("f10", "label = 7", ids % 10 == 7),
            ("f1i", "shard < 10", ids % 1000 < 10),
            ("f01i", "shard = 7", ids % 1000 == 7),
            ("f01", f"label = 7 AND {number} % 1000 = 7", ids % 1000 == 7)]


FILTER_NAMES = {"f10": "10 %: label = 7", "f1i": "1 %: shard < 10 (indexed)",
                "f01i": "0.1 %: shard = 7 (indexed)",
                "f01": "0.1 %: an expression of image_path (no index)"}


def bench_size(ctx: Services, n: int, dim: int, repeat: int, rng: np.random.Generator,
               index_upto: int, recall_queries: int) -> dict:
    from thanosql_kernel.models import embed, load_images
    from thanosql_kernel.vectors import exact_top_k

    started = time.perf_counter()
    vectors = synthetic_table(ctx, f"t{n}", n, dim, rng, build_index=n <= index_upto)
    setup = time.perf_counter() - started
    model, _ = ctx.loader.load("m")
    q = embed(model, load_images([str(ctx.settings.resolve(QUERY_IMAGE))], model.image_size,
                                 model.channels))[0]
    first_gen = (f"SELECT image_path, {SIM} FROM (SEARCH IMAGE images='{QUERY_IMAGE}' USING m "
                 f"AS SELECT * FROM t{n}) ORDER BY {SIM} DESC LIMIT 10")
    second_gen = (f"SEARCH IMAGE USING m OPTIONS (search_by='image', "
                  f"search_input='{QUERY_IMAGE}', top_k=10) AS SELECT * FROM t{n}")
    exact_idx, _ = exact_top_k(vectors, q, 10, normalized=True)
    truth = {f"synthetic/{i}.jpg" for i in exact_idx}
    row: dict = {"rows": n, "setup_s": setup}
    # the first search loads the column's compact copy: timed beside one plain read of it
    rss_before = _rss_mb()
    t = time.perf_counter()
    run(ctx, first_gen)
    row["first_search_s"] = time.perf_counter() - t
    row["rss_mb"] = _rss_mb()
    row["rss_growth_mb"] = row["rss_mb"] - rss_before
    row["read_column_s"] = _read_column(ctx, f"t{n}")
    # a restart: a new kernel's services on the same workspace, whose first search reads the
    # compact copy the first one stored (vectors.StoredCopies) instead of the column
    again = Services.open(ctx.settings)
    try:
        t = time.perf_counter()
        run(again, first_gen)
        row["restart_search_s"] = time.perf_counter() - t
    finally:
        again.close()
    for label, sql in (("first", first_gen), ("second", second_gen)):
        run(ctx, sql)  # warm: the index is loaded on first use
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            result = run(ctx, sql)
            times.append((time.perf_counter() - t) * 1000)
        got = {r[0] for r in result.rows}
        row[f"{label}_p50"], row[f"{label}_p95"] = percentiles(times)
        row[f"{label}_recall"] = len(got & truth) / 10
    # a new query image each time: nothing remembered from an earlier search helps
    times = []
    for image in _test_images(ctx, repeat):
        sql = first_gen.replace(QUERY_IMAGE, image)
        t = time.perf_counter()
        run(ctx, sql)
        times.append((time.perf_counter() - t) * 1000)
    row["new_p50"], row["new_p95"] = percentiles(times)
    row["new2_p50"] = _new_images_p50(ctx, second_gen, repeat)
    # filtered: WHERE keeps 10 % (label = 7), 1 % and 0.1 % of the rows, on a column with an
    # index (shard) and on an expression no index serves; truth is brute force over the rows
    # kept
    ids = np.arange(n)
    for label, where, kept in filters(ids):
        sql = second_gen + f" WHERE {where}"
        rows_kept = np.flatnonzero(kept)
        best, _ = exact_top_k(vectors[rows_kept], q, 10, normalized=True)
        want = {f"synthetic/{i}.jpg" for i in rows_kept[best]}
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            result = run(ctx, sql)
            times.append((time.perf_counter() - t) * 1000)
        row[f"{label}_p50"], row[f"{label}_p95"] = percentiles(times)
        row[f"{label}_recall"] = len({r[0] for r in result.rows} & want) / max(1, len(want))
        # a new query image each time: other best rows, other pages of the table to read
        row[f"{label}_new_p50"] = _new_images_p50(ctx, sql, repeat)
        # the floor of any filtered search: the database answering the WHERE alone (a
        # plain SQL cell through the same engine), which reads every row it cannot index
        plain = f"SELECT image_path FROM t{n} WHERE {where}"
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            run(ctx, plain)
            times.append((time.perf_counter() - t) * 1000)
        row[f"{label}_sql_p50"] = percentiles(times)[0]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        exact_top_k(vectors, q, 10, normalized=True)
        times.append((time.perf_counter() - t) * 1000)
    row["numpy_p50"], row["numpy_p95"] = percentiles(times)
    row["scan_ms"], row["scan_bytes"] = _scan_alone(ctx, f"t{n}", q, repeat)
    row["recall_1000"] = _recall(ctx, f"t{n}", vectors, recall_queries, rng)
    return row


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _read_column(ctx: Services, table: str) -> float:
    """Seconds to read the embedding column once, every value, as the first search must:
    with the driver's own cursor on SQLite (the fastest read there is), streamed on
    PostgreSQL."""
    import sqlalchemy as sa

    sql = f"SELECT image_path, m_simclr FROM {table} WHERE m_simclr IS NOT NULL"
    started = time.perf_counter()
    with ctx.store.begin() as conn:
        if conn.dialect.name == "sqlite":
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(sql)
            fetch = cursor.fetchmany
        else:
            fetch = conn.execution_options(stream_results=True, yield_per=50_000) \
                .execute(sa.text(sql)).fetchmany
        while fetch(50_000):
            pass
    return time.perf_counter() - started


def _new_images_p50(ctx: Services, sql: str, repeat: int) -> float:
    """p50 ms of ``sql`` (a search by QUERY_IMAGE) with another test image each time."""
    times = []
    for image in _test_images(ctx, repeat):
        t = time.perf_counter()
        run(ctx, sql.replace(QUERY_IMAGE, image))
        times.append((time.perf_counter() - t) * 1000)
    return percentiles(times)[0]


def _test_images(ctx: Services, count: int) -> list[str]:
    folder = ctx.settings.resolve("tutorial_data/mnist_data/test")
    names = sorted(p.name for p in folder.glob("*.jpg"))[:count]
    return [f"tutorial_data/mnist_data/test/{name}" for name in names]


def _entry(ctx: Services, table: str):
    with ctx.store.begin() as tx:
        return ctx.catalog.entry(tx, table, "m_simclr")


def _scan_alone(ctx: Services, table: str, q: np.ndarray, repeat: int) -> tuple[float, int]:
    """(p50 ms, bytes read) of the compact copy's candidates alone, the part that reads
    the column's bytes."""
    entry = _entry(ctx, table)
    with ctx.store.begin() as tx:
        _, compact = ctx.catalog._compact(tx, entry, None)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        compact.candidates(q, 10)
        times.append((time.perf_counter() - t) * 1000)
    return percentiles(times)[0], compact.count * (int(compact.codes.shape[1]) + 2)


def _recall(ctx: Services, table: str, vectors: np.ndarray, count: int,
            rng: np.random.Generator) -> float:
    """recall@10 over ``count`` random query vectors through the engine's exact path (the
    catalog's candidates, the rows fetched, scored from the column), against float32 brute
    force; ties at the 10th place count as found."""
    from thanosql_kernel.vectors import blobs_to_matrix, cosine_scores

    if not count:
        return float("nan")
    entry = _entry(ctx, table)
    found = 0
    for i in range(count):
        q = vectors[rng.integers(len(vectors))] + rng.standard_normal(vectors.shape[1]) \
            .astype(np.float32) * (0.3 if i % 2 else 3.0)
        # the float32 brute force's 10th value, less what float32 can be off by
        sims = vectors @ (q / np.linalg.norm(q))
        kth = float(np.partition(sims, len(sims) - 10)[len(sims) - 10]) - 1e-5
        with ctx.store.begin() as tx:
            paths = ctx.catalog.candidates(tx, entry, q, 10)
            rows = ctx.catalog.rows_at(tx, entry, paths)
        at = [c.lower() for c in rows.columns].index("m_simclr")
        got = cosine_scores(blobs_to_matrix([bytes(r[at]) for r in rows.rows],
                                            vectors.shape[1]), q)
        found += min(10, int(np.sum(got >= kth)))
    return found / (10 * count)


def memory_bandwidth_gbs() -> float:
    """This machine's memory bandwidth as numpy sees it: the best of 5 copies of 512 MB
    (bytes read plus bytes written, per second)."""
    a = np.ones(128 * 1024 * 1024, dtype=np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def convert_child(folder: Path, images: int, env: dict[str, str]) -> dict:
    """In this (child) process: CONVERT `images` JPEGs end to end; report speed and peak RSS."""
    ctx = Services.open(Settings.from_env(cwd=folder, env=env))
    source = sorted((folder / "tutorial_data" / "mnist_data" / "train").glob("*.jpg"))
    many = folder / "many"
    if many.exists():
        import shutil

        shutil.rmtree(many)
    many.mkdir()
    lines = ["image_path"]
    for i in range(images):  # distinct paths (hard links), so every one is decoded
        target = many / f"{i}.jpg"
        os.link(source[i % len(source)], target)
        lines.append(f"many/{i}.jpg")
    (folder / "many.csv").write_text("\n".join(lines) + "\n")
    run(ctx, "COPY many OPTIONS (overwrite=True) FROM 'many.csv'")
    rss_before = _high_water_mb()
    started = time.perf_counter()
    run(ctx, "CONVERT USING m AS SELECT * FROM many")
    seconds = time.perf_counter() - started
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
            "peak_rss_mb": _high_water_mb(), "rss_before_mb": rss_before}


def _high_water_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across fork and exec, so a
    child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--convert", type=int, default=20_000, help="images for CONVERT")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dim", type=int, default=128, help="embedding_dim of the model")
    parser.add_argument("--backend", choices=("embedded", "server", "both"), default="embedded",
                        help="server/both need THANOSQL_DATABASE_URL and THANOSQL_CHROMA_URL "
                             "(run under .ci/servers)")
    parser.add_argument("--index-upto", type=int, default=100_000,
                        help="build the Chroma index of synthetic tables up to this size")
    parser.add_argument("--recall-queries", type=int, default=1000,
                        help="random query vectors for recall@10 through the exact path")
    parser.add_argument("--ten-million", action="store_true",
                        help="add a 10,000,000-row table (about 10 minutes and 6 GB of disk)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    server = {k: v for k, v in os.environ.items()
              if k in ("THANOSQL_DATABASE_URL", "THANOSQL_CHROMA_URL")}
    backends = {"embedded": {}, "server": server}
    if args.backend != "both":
        backends = {args.backend: backends[args.backend]}
    if "server" in backends and len(server) < 2:
        parser.error("--backend server needs THANOSQL_DATABASE_URL and THANOSQL_CHROMA_URL: "
                     "run it as .ci/servers .venv/bin/python bench/search.py --backend both")
    env = backends[list(backends)[-1]]
    if args.child:
        print(json.dumps(convert_child(Path(args.child), args.convert, env)))
        return
    rng = np.random.default_rng(0)
    p50: dict[tuple[str, int], float] = {}
    sizes = [int(x) for x in args.sizes.split(",")] + ([10_000_000] if args.ten_million else [])
    bandwidth = memory_bandwidth_gbs()
    with tempfile.TemporaryDirectory() as tmp:
        for backend, backend_env in backends.items():
            folder = Path(tmp) / backend
            folder.mkdir()
            ctx = prepare(folder, args.dim, backend_env)
            print(f"SEARCH latency through the engine, backend={backend}, model "
                  f"embedding_dim={args.dim}, {args.repeat} queries each; memory bandwidth "
                  f"(numpy copy) {bandwidth:.1f} GB/s; {os.cpu_count()} CPUs\n")
            print("| rows | 1st gen p50/p95 ms | 2nd gen p50/p95 ms | new image p50/p95 ms "
                  "| numpy fp32 p50/p95 ms | 1st gen / numpy | scan ms | MB scanned (numpy) "
                  "| scan GB/s | recall@10 (1 / 1,000 queries) | first search s, after a "
                  "restart s (read column s) | RSS MB (+ for the column) |")
            print("|" + "---|" * 12)
            filtered = []
            for n in sizes:
                r = bench_size(ctx, n, args.dim, args.repeat, rng, args.index_upto,
                               args.recall_queries)
                filtered.append(r)
                p50[(backend, n)] = r["first_p50"]
                print(f"| {n:,} | {r['first_p50']:.1f} / {r['first_p95']:.1f} "
                      f"| {r['second_p50']:.1f} / {r['second_p95']:.1f} "
                      f"| {r['new_p50']:.1f} / {r['new_p95']:.1f} "
                      f"| {r['numpy_p50']:.1f} / {r['numpy_p95']:.1f} "
                      f"| {r['first_p50'] / r['numpy_p50']:.2f}x "
                      f"| {r['scan_ms']:.1f} | {r['scan_bytes'] / 1e6:,.0f} "
                      f"({n * args.dim * 4 / 1e6:,.0f}) "
                      f"| {r['scan_bytes'] / r['scan_ms'] / 1e6:.1f} "
                      f"| {min(r['first_recall'], r['second_recall']):.2f} / "
                      f"{r['recall_1000']:.2f} "
                      f"| {r['first_search_s']:.1f}, {r['restart_search_s']:.2f} "
                      f"({r['read_column_s']:.1f}) "
                      f"| {r['rss_mb']:,.0f} (+{r['rss_growth_mb']:,.0f}) |", flush=True)
            print("\nfiltered, 2nd gen top_k=10 AS SELECT * FROM t WHERE …: p50/p95 ms, "
                  "p50 / the unfiltered 2nd gen p50, recall@10 against brute force over the "
                  "rows kept; with a new query image each time, p50 ms and its ratio to the "
                  "unfiltered 2nd gen's with new images (p50 ms in brackets); beside each, the "
                  "WHERE alone as a plain SQL cell (SELECT image_path FROM t WHERE …) p50 ms\n")
            print("| rows | WHERE keeps | p50 / p95 ms | p50 / unfiltered | recall@10 "
                  "| a new image each time p50 ms | / unfiltered (its p50) "
                  "| its SQL alone p50 ms | p50 / its SQL alone |\n|" + "---|" * 9)
            for r in filtered:
                for key, name in FILTER_NAMES.items():
                    print(f"| {r['rows']:,} | {name} | {r[f'{key}_p50']:.1f} / "
                          f"{r[f'{key}_p95']:.1f} | {r[f'{key}_p50'] / r['second_p50']:.2f}x "
                          f"| {r[f'{key}_recall']:.2f} | {r[f'{key}_new_p50']:.1f} "
                          f"| {r[f'{key}_new_p50'] / r['new2_p50']:.2f}x ({r['new2_p50']:.1f}) "
                          f"| {r[f'{key}_sql_p50']:.1f} "
                          f"| {r[f'{key}_p50'] / r[f'{key}_sql_p50']:.2f}x |")
            ctx.close()
        if len(backends) == 2:
            for n in sizes:
                print(f"server / embedded p50 at {n:,} rows: "
                      f"{p50[('server', n)] / p50[('embedded', n)]:.2f}x (goal at 100k: <= 2x)")
        folder = Path(tmp) / list(backends)[-1]
        if args.convert:
            out = subprocess.run([sys.executable, __file__, "--child", str(folder),
                                  "--convert", str(args.convert), "--dim", str(args.dim),
                                  "--backend", list(backends)[-1]],
                                 capture_output=True, text=True, check=True)
            c = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"\nCONVERT end to end (decode, embed, write, index) of {c['images']:,} "
                  f"JPEGs: {c['seconds']:.1f} s = {c['images_per_s']:,.0f} images/s, "
                  f"peak RSS {c['peak_rss_mb']:,.0f} MB (process before CONVERT: "
                  f"{c['rss_before_mb']:,.0f} MB)")


if __name__ == "__main__":
    main()

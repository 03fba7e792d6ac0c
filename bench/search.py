"""SEARCH latency through the engine at 1k-1M rows, beside numpy brute force; CONVERT speed.

For each table size the table gets synthetic unit vectors (the size is what matters) in the
embedding column, indexed the way CONVERT indexes them; the query is the one a user writes:

    SELECT image_path, m_simclr_similarity1 FROM (SEARCH IMAGE images='q.jpg' USING m
        AS SELECT * FROM t) ORDER BY m_simclr_similarity1 DESC LIMIT 10

and the second generation with top_k=10. Beside it, in the same run, numpy brute force
(exact cosine top 10 over the same vectors in memory) and the recall@10 of the engine's
answer against it. CONVERT is measured end to end on real JPEGs (decode, embed, write,
index) in a child process, whose peak RSS is reported.

    python bench/search.py                      # 1k, 10k, 100k rows; CONVERT of 20k images
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

    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = sa.Table(name, sa.MetaData(), sa.Column("image_path", sa.Text),
                     sa.Column("label", sa.Integer), sa.Column("m_simclr", sa.LargeBinary))
    ctx.catalog.ensure()
    with ctx.store.begin(write=True) as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        for start in range(0, n, 50_000):
            conn.execute(table.insert(), [
                {"image_path": f"synthetic/{i}.jpg", "label": i % 10,
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


def bench_size(ctx: Services, n: int, dim: int, repeat: int, rng: np.random.Generator,
               index_upto: int) -> dict:
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
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        exact_top_k(vectors, q, 10, normalized=True)
        times.append((time.perf_counter() - t) * 1000)
    row["numpy_p50"], row["numpy_p95"] = percentiles(times)
    return row


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
    with tempfile.TemporaryDirectory() as tmp:
        for backend, backend_env in backends.items():
            folder = Path(tmp) / backend
            folder.mkdir()
            ctx = prepare(folder, args.dim, backend_env)
            print(f"SEARCH latency through the engine, backend={backend}, model "
                  f"embedding_dim={args.dim}, {args.repeat} queries each")
            print(f"{'rows':>9} {'1st gen p50/p95 ms':>19} {'2nd gen p50/p95 ms':>19} "
                  f"{'numpy p50/p95 ms':>17} {'recall@10':>10} {'setup s':>8}")
            for n in (int(x) for x in args.sizes.split(",")):
                r = bench_size(ctx, n, args.dim, args.repeat, rng, args.index_upto)
                p50[(backend, n)] = r["first_p50"]
                print(f"{n:>9,} {r['first_p50']:>9.1f}/{r['first_p95']:<9.1f} "
                      f"{r['second_p50']:>9.1f}/{r['second_p95']:<9.1f} "
                      f"{r['numpy_p50']:>8.1f}/{r['numpy_p95']:<8.1f} "
                      f"{min(r['first_recall'], r['second_recall']):>10.2f} "
                      f"{r['setup_s']:>8.1f}", flush=True)
            ctx.close()
        if len(backends) == 2:
            for n in (int(x) for x in args.sizes.split(",")):
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

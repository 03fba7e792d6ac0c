"""Chroma index against exact numpy search: build time, query latency and recall@10 per size.

Random 128-d float32 vectors (the hardest case for HNSW: no structure to exploit). For each N:
the time `ChromaIndex.replace` takes to build the index, its query latency p50/p95 over 50
queries for k=10, its recall@10 against exact search, and exact numpy latency p50 over the
same queries (the matrix normalised once up front, as a caller caching it would). Usage:
    python bench/vectors.py [--big] [--sizes 1000,10000] [--queries 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from thanosql_kernel.vectors import ChromaIndex, exact_top_k, normalize

DIM = 128
K = 10


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q)) * 1e3


def measure(n: int, queries: int, folder: Path) -> dict[str, float]:
    rng = np.random.default_rng(n)
    matrix = rng.standard_normal((n, DIM), dtype=np.float32)
    probes = rng.standard_normal((queries, DIM), dtype=np.float32)
    ids = [str(i) for i in range(n)]

    unit = normalize(matrix)
    exact_times, truth = [], []
    for probe in probes:
        started = time.perf_counter()
        idx, _ = exact_top_k(unit, probe, K, normalized=True)
        exact_times.append(time.perf_counter() - started)
        truth.append({str(i) for i in idx})

    with ChromaIndex(folder / f"n{n}") as index:
        started = time.perf_counter()
        index.replace("bench", ids, matrix)
        build = time.perf_counter() - started
        started = time.perf_counter()
        index.query("bench", probes[0], K)  # the first query loads the index from disk
        first = time.perf_counter() - started
        chroma_times, recalls = [], []
        for probe, expected in zip(probes, truth, strict=True):
            started = time.perf_counter()
            hits = index.query("bench", probe, K)
            chroma_times.append(time.perf_counter() - started)
            recalls.append(len(expected & {id_ for id_, _ in hits}) / K)

    return {"n": n, "build_s": build, "first_ms": first * 1e3,
            "p50": percentile_ms(chroma_times, 50), "p95": percentile_ms(chroma_times, 95),
            "recall": float(np.mean(recalls)), "exact_p50": percentile_ms(exact_times, 50),
            "exact_p95": percentile_ms(exact_times, 95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="add N = 1,000,000 (long build)")
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="comma-separated N (default %(default)s)")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.big else [])

    header = (f"{'N':>9} {'build s':>8} {'1st ms':>7} {'chroma p50':>10} {'p95':>6} "
              f"{'recall@10':>9} {'exact p50':>9} {'p95':>6}  faster")
    print(header)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            row = measure(n, args.queries, Path(folder))
            rows.append(row)
            faster = "chroma" if row["p50"] < row["exact_p50"] else "exact"
            print(f"{n:>9,} {row['build_s']:>8.1f} {row['first_ms']:>7.0f} {row['p50']:>10.2f} "
                  f"{row['p95']:>6.2f} {row['recall']:>9.3f} {row['exact_p50']:>9.2f} "
                  f"{row['exact_p95']:>6.2f}  {faster}", flush=True)
    crossover = next((r["n"] for r in rows if r["p50"] < r["exact_p50"]), None)
    print("crossover: " + (f"Chroma answers faster from N = {crossover:,}" if crossover
                           else "exact search is faster at every size measured"))


if __name__ == "__main__":
    main()

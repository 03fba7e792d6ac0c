"""EVALUATE's time and memory at 10k and 100k rows, beside plain numpy doing the same search.

Each size runs in a child process of its own (its peak resident memory is its own): a table
of n rows whose image paths cycle over the tutorial's 1,000 digit images and whose
``m_simclr`` column holds 128-d vectors around ten centres (the row's label), recorded in the
catalog as CONVERT records a column. In the same child:

- ``EVALUATE USING m AS SELECT * FROM t`` through the engine (default options: k=4, 10,000
  query rows past that many), end to end: rows read, every image decoded for raw pixels,
  both methods' neighbours found and scored;
- the baseline, plain numpy on the same float32 vectors and the same query rows: unit rows,
  block by block ``Q @ X.T``, ``argpartition`` for the top k, precision@k; for the model's
  vectors and for the raw pixels (decoded beforehand, their decoding not timed).

The goal (issue 24): 100,000 rows in 60 s or less on 2 cores, memory bounded. (Each image
stands in the table many times, so both methods score near 1: the figures here are for time
and memory; bench/quality.py measures quality.)

    python bench/evaluate.py                        # 10k and 100k rows
    python bench/evaluate.py --sizes 20000 --queries all   # every row a query
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embedding_map import _high_water_mb, fill, prepare, run  # noqa: E402

from thanosql_kernel.engine import Services  # noqa: E402
from thanosql_kernel.settings import Settings  # noqa: E402

GOALS = {100_000: 60.0}


def numpy_baseline(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int
                   ) -> float:
    """precision@k by plain numpy, blockwise (the float32 answer, ties as argpartition
    leaves them)."""
    unit = vectors.astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True).clip(1e-12)
    block = max(1, (16 << 20) // len(unit))
    same = 0
    for start in range(0, len(queries), block):
        rows = queries[start:start + block]
        sims = unit[rows] @ unit.T
        sims[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        same += int((labels[top] == labels[rows][:, None]).sum())
    return same / (len(queries) * k)


def child(folder: Path, n: int, queries: str) -> dict:
    from thanosql_kernel.models import load_images
    from thanosql_kernel.vectors import from_blob

    ctx = Services.open(Settings.from_env(cwd=folder, env={}))
    fill(ctx, n)
    option = "" if queries == "default" else \
        f" OPTIONS (queries={'None' if queries == 'all' else queries})"
    run(ctx, "SELECT COUNT(*) FROM t")
    started = time.perf_counter()
    table = run(ctx, f"EVALUATE USING m{option} AS SELECT * FROM t")
    seconds = time.perf_counter() - started
    peak = _high_water_mb()
    result = [dict(zip(table.columns, r, strict=True)) for r in table.rows]

    rows = run(ctx, "SELECT image_path, label, m_simclr FROM t").rows
    labels = np.array([r[1] for r in rows])
    vectors = np.stack([from_blob(r[2]) for r in rows])
    q = result[0]["queries"]
    sample = np.arange(n) if q >= n else np.sort(
        np.random.default_rng(0).choice(n, q, replace=False))
    distinct = sorted({r[0] for r in rows})
    decoded = load_images([str(folder / p) for p in distinct], 28, 1).reshape(len(distinct), -1)
    where = {p: i for i, p in enumerate(distinct)}
    pixels = decoded.numpy()[[where[r[0]] for r in rows]]
    started = time.perf_counter()
    base_model = numpy_baseline(vectors, labels, sample, 4)
    base_raw = numpy_baseline(pixels, labels, sample, 4)
    baseline = time.perf_counter() - started
    ctx.close()
    return {"rows": n, "seconds": seconds, "baseline": baseline, "peak_mb": peak,
            "result": result, "base_model": base_model, "base_raw": base_raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", default="default",
                        help="EVALUATE's queries option: 'default', 'all' or a number")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, n, queries = args.child
        print(json.dumps(child(Path(folder), int(n), queries)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder)
        print(f"EVALUATE on {os.cpu_count()} cores, k=4, queries={args.queries}")
        print(f"{'rows':>9} | {'queries':>7} | {'EVALUATE s':>10} | {'numpy s':>7} | "
              f"{'goal s':>6} | {'peak RSS MB':>11} | P@4 model / numpy | P@4 raw / numpy")
        for n in (int(s) for s in args.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(n),
                                  args.queries], capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            model, raw = r["result"]
            goal = GOALS.get(n)
            print(f"{n:>9,} | {model['queries']:>7,} | {r['seconds']:>10.1f} | "
                  f"{r['baseline']:>7.1f} | {goal if goal else '-':>6} | {r['peak_mb']:>11,.0f}"
                  f" | {model['precision_at_k']:.4f} / {r['base_model']:.4f} | "
                  f"{raw['precision_at_k']:.4f} / {r['base_raw']:.4f}", flush=True)


if __name__ == "__main__":
    main()

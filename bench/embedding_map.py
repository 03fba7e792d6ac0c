"""PRINT EMBEDDING's time and memory at 10k and 100k rows, beside reading the same rows.

Each size runs in a child process of its own (so its peak resident memory is its own): a
table of n rows whose image paths cycle over the tutorial's 1,000 digit images and whose
``m_simclr`` column holds 128-d vectors around ten centres (one per label, so the map has
something to show), recorded in the catalog as CONVERT records a column. Then, in the same
child, three times each, best and median:

- ``SELECT * FROM t`` through the engine: the rows read, the floor of any statement over them;
- ``PRINT EMBEDDING USING m OPTIONS (color_col='label') AS SELECT * FROM t``: read, project
  (PCA), draw, 40 thumbnails read from their files, the PNG encoded.

The goals (issue 23): 10,000 points in 5 s or less, 100,000 in 30 s or less, memory bounded
(the peak grows with the rows, not with their square).

    python bench/embedding_map.py                 # 10k and 100k rows
    python bench/embedding_map.py --sizes 1000000
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

from thanosql_kernel.engine import Run, Services, execute  # noqa: E402
from thanosql_kernel.settings import Settings  # noqa: E402
from thanosql_kernel.syntax import parse  # noqa: E402

MAP = "PRINT EMBEDDING USING m OPTIONS (color_col='label') AS SELECT * FROM t"
GOALS = {10_000: 5.0, 100_000: 30.0}


def run(ctx: Services, cell: str):
    """The cell's last result, every row of a table kept (as the Python magic keeps them)."""
    result = None
    for node in parse(cell):
        result = execute(node, ctx, Run({}, None))
    return result


def prepare(folder: Path) -> None:
    from thanosql_kernel.datasets import get_dataset

    get_dataset("mnist_data").write(folder, overwrite=True)
    ctx = Services.open(Settings.from_env(cwd=folder, env={}))
    run(ctx, "COPY mnist_train FROM 'tutorial_data/mnist_data/mnist_train.csv'")
    run(ctx, "BUILD MODEL m USING SimCLR OPTIONS (max_epochs=1) AS SELECT * FROM mnist_train")
    ctx.close()


def fill(ctx: Services, n: int, dim: int = 128) -> None:
    import csv

    import sqlalchemy as sa

    from thanosql_kernel.storage import EmbeddingColumn, EmbeddingColumns
    from thanosql_kernel.vectors import to_blob

    with open(ctx.settings.cwd / "tutorial_data/mnist_data/mnist_train.csv", newline="") as f:
        files = [row["image_path"] for row in csv.DictReader(f)]
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, dim)).astype(np.float32)
    labels = np.arange(n) % 10
    vectors = centres[labels] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    table = sa.Table("t", sa.MetaData(), sa.Column("image_path", sa.Text),
                     sa.Column("label", sa.Integer), sa.Column("m_simclr", sa.LargeBinary))
    ctx.catalog.ensure()
    with ctx.store.begin(write=True) as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        for start in range(0, n, 50_000):
            conn.execute(table.insert(), [
                {"image_path": files[i % len(files)],
                 "label": int(labels[i]), "m_simclr": to_blob(vectors[i])}
                for i in range(start, min(n, start + 50_000))])
        EmbeddingColumns(ctx.store).put(conn, EmbeddingColumn("t", "m_simclr", "m",
                                                              "image_path", dim, "t_bench", n))


def child(folder: Path, n: int, repeat: int) -> dict:
    ctx = Services.open(Settings.from_env(cwd=folder, env={}))
    fill(ctx, n)
    run(ctx, "SELECT COUNT(*) FROM t")   # the database warm, as a notebook's would be
    before = _high_water_mb()
    read, mapped = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        rows = run(ctx, "SELECT * FROM t")
        read.append(time.perf_counter() - started)
        assert len(rows.rows) == n
        del rows
        started = time.perf_counter()
        result = run(ctx, MAP)
        mapped.append(time.perf_counter() - started)
    image = result.images[0]
    (folder / f"map_{n}.png").write_bytes(image.png)
    ctx.close()
    return {"rows": n, "read": read, "map": mapped, "png_kb": len(image.png) / 1024,
            "caption": image.caption, "before_mb": before, "peak_mb": _high_water_mb()}


def _high_water_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="a folder to keep the maps drawn in")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, n, repeat = args.child
        print(json.dumps(child(Path(folder), int(n), int(repeat))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder)
        print(f"PRINT EMBEDDING on {os.cpu_count()} cores; best and median of {args.repeat}")
        print(f"{'rows':>9} | {'SELECT * s':>10} | {'map s':>12} | {'map/read':>8} | "
              f"{'goal s':>6} | {'RSS MB before / peak':>20} | {'PNG KB':>6}")
        for n in (int(s) for s in args.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(n),
                                  str(args.repeat)], capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            read, mapped = min(r["read"]), min(r["map"])
            goal = GOALS.get(n)
            print(f"{n:>9,} | {read:>10.2f} | {mapped:>5.2f} / {statistics.median(r['map']):>4.2f}"
                  f" | {mapped / read:>7.2f}x | {goal if goal else '-':>6} | "
                  f"{r['before_mb']:>9,.0f} / {r['peak_mb']:>8,.0f} | {r['png_kb']:>6,.0f}")
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"map_{n}.png").write_bytes((folder / f"map_{n}.png").read_bytes())
        print(r["caption"])


if __name__ == "__main__":
    main()

"""Models of hundreds of MB in the database: time and peak memory to store and to fetch one.

Each phase runs in a fresh Python process, so its peak resident memory (ru_maxrss) is its own;
the table shows how far above the process's resident memory at the start of the phase the
peak went, against the model's size. The baseline, in the same run, is copying the same file
on disk (shutil.copyfile). Usage:
    python bench/model_store.py [--mb 300]
    .ci/servers .venv/bin/python bench/model_store.py --mb 300   # on PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def phase(name: str, workspace: Path, mb: int) -> dict[str, float]:
    """One phase in this process: 'store' registers a model of ``mb`` MB, 'fetch' fetches it
    into an empty cache, 'copy' copies its weights file (the baseline)."""
    from thanosql_kernel.settings import Settings
    from thanosql_kernel.storage import ModelRegistry, SqlStore

    settings = Settings.from_env(cwd=workspace.parent)
    registry = ModelRegistry(SqlStore(settings.database_url), settings.workspace)
    registry.entries()   # connect and create the tables before measuring
    source = workspace.parent / "weights.pt"
    start_mb = _resident_mb()
    started = time.perf_counter()
    if name == "store":
        def write(folder: Path) -> None:
            shutil.copyfile(source, folder / "weights.pt")
            (folder / "model.json").write_text(json.dumps({"format": 2}))

        registry.register("big", base_model="SimCLR", trained_on="bench", row_count=0,
                          card={"name": "big"}, write=write, overwrite=True)
    elif name == "fetch":
        shutil.rmtree(settings.workspace / "cache", ignore_errors=True)
        registry.files(registry.get("big"))
    else:
        shutil.copyfile(source, workspace.parent / "copy.pt")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "above_start_mb": max(0.0, peak_mb - start_mb)}


def run_phase(name: str, folder: Path, mb: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--folder", str(folder),
                          "--mb", str(mb)], capture_output=True, text=True, check=True,
                         env={**os.environ, "THANOSQL_WORKSPACE": str(folder / ".thanosql")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="size of the model's weights")
    parser.add_argument("--phase", choices=("store", "fetch", "copy"))
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.folder / ".thanosql", args.mb)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (folder / "weights.pt").open("wb") as f:
            block = os.urandom(2**20)
            for _ in range(args.mb):
                f.write(block)
        backend = "PostgreSQL" if os.environ.get("THANOSQL_DATABASE_URL") else "SQLite"
        rows = {name: run_phase(name, folder, args.mb) for name in ("copy", "store", "fetch")}
    print(f"model of {args.mb} MB on {backend} (chunks of 8 MiB)")
    print(f"{'phase':<34}{'seconds':>9}{'MB/s':>9}{'peak RSS above start':>24}")
    labels = {"copy": "copy the file (baseline)", "store": "store: BUILD's register",
              "fetch": "fetch into an empty cache"}
    for name, row in rows.items():
        print(f"{labels[name]:<34}{row['seconds']:>9.2f}{args.mb / row['seconds']:>9.0f}"
              f"{row['above_start_mb']:>15.0f} MB ({row['above_start_mb'] / args.mb:.2f}x)")
    for name in ("store", "fetch"):
        print(f"{name} / copy time: {rows[name]['seconds'] / rows['copy']['seconds']:.1f}x")


if __name__ == "__main__":
    main()

"""BUILD and CONVERT on a quiet CPU and on one that other processes keep busy, per thread policy.

    python bench/busy_cpu.py [--images 20000] [--policies auto,cores,1] [--repeat 1]

Writes the tutorial's data into a temporary folder, then times, each in a fresh Python process
(as a new kernel would be) through the engine:

- ``build``: the tutorial's BUILD MODEL cell (1 epoch over the 1,000 training digits);
- ``convert``: CONVERT USING that model over ``--images`` JPEGs (hard links to the digits, so
  every one is decoded);
- ``search``: the tutorial's SEARCH for ``923.jpg`` over those converted rows, top 4, the
  median of 10 after one untimed run.

once on a quiet machine and once while ``os.cpu_count()`` processes spin (``while True:
pass``), the "busy" case of issue 14. Policies are THANOSQL_THREADS values: ``auto`` (the
default: torch gets the cores the others leave free), ``cores`` (torch's own default, one
thread per core, which is what the kernel did before) and ``1``. The table gives seconds and
busy / quiet; the last lines compare the policies with ``cores`` in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import Workspace  # noqa: E402 - the engine driven statement by statement

WHAT = ("build", "convert", "search")
#: the tutorial's BUILD; the timed one makes a model of its own ("timed"), so it never
#: replaces the one CONVERT and SEARCH use ("m": SEARCH refuses a rebuilt model's vectors)
BUILD = ("BUILD MODEL {} USING SimCLR OPTIONS (image_col='image_path', max_epochs=1, "
         "overwrite=True) AS SELECT * FROM mnist_train")
CONVERT = "CONVERT USING m AS SELECT * FROM many"
SEARCH = ("SELECT image_path FROM (SEARCH IMAGE images='tutorial_data/mnist_data/test/923.jpg' "
          "USING m AS SELECT * FROM many) ORDER BY m_simclr_similarity1 DESC LIMIT 4")
#: SEARCH: timed this many times after one untimed run (which loads the model and vectors)
SEARCHES = 10


def one(folder: Path, what: str) -> None:
    """In a fresh process: run one statement through the engine and print its seconds."""
    ws = Workspace(folder, environment=True)   # THANOSQL_THREADS is the policy measured
    import thanosql_kernel.models.train  # noqa: F401 - torch loaded before the clock starts

    sql = {"build": BUILD.format("timed"), "convert": CONVERT, "search": SEARCH}[what]
    runs = []
    for _ in range(1 + SEARCHES if what == "search" else 1):
        started = time.perf_counter()
        ws.run(sql)
        runs.append(time.perf_counter() - started)
    runs = sorted(runs[1:]) if what == "search" else runs
    print(f"{runs[len(runs) // 2]:.4f}")
    ws.close()


def prepare(folder: Path, images: int) -> None:
    ws = Workspace(folder)
    ws.run("GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)")
    ws.run("COPY mnist_train OPTIONS (overwrite=True) FROM "
           "'tutorial_data/mnist_data/mnist_train.csv'")
    source = sorted((folder / "tutorial_data" / "mnist_data" / "train").glob("*.jpg"))
    many = folder / "many"
    many.mkdir()
    lines = ["image_path"]
    for i in range(images):   # distinct files (hard links): each is decoded
        os.link(source[i % len(source)], many / f"{i}.jpg")
        lines.append(f"many/{i}.jpg")
    (folder / "many.csv").write_text("\n".join(lines) + "\n")
    ws.run("COPY many OPTIONS (overwrite=True) FROM 'many.csv'")
    ws.run(BUILD.format("m") + ";\n" + CONVERT)   # the model and vectors SEARCH uses
    ws.close()


def timed(folder: Path, what: str, policy: str, busy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "THANOSQL_THREADS"}
    if policy != "cores":
        env["THANOSQL_THREADS"] = policy
    else:   # torch's default count, pinned: the kernel before issue 14
        import torch

        env["THANOSQL_THREADS"] = str(torch.get_num_threads())
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)] if busy else []
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run([sys.executable, __file__, "--one", what, "--folder", str(folder)],
                             env=env, capture_output=True, text=True, check=True).stdout
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--policies", default="auto,cores,1")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--what", default=",".join(WHAT), help="which of build,convert,search")
    ap.add_argument("--one", choices=WHAT, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.folder, args.one)
        return
    import torch

    policies = args.policies.split(",")
    whats = [w for w in WHAT if w in args.what.split(",")]
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads "
          f"by default); busy = {os.cpu_count()} spinning processes; median of {args.repeat}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="busy-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.images)
        seconds: dict[tuple[str, str, bool], float] = {}
        for what in whats:
            for policy in policies:
                for busy in (False, True):
                    runs = sorted(timed(folder, what, policy, busy) for _ in range(args.repeat))
                    seconds[what, policy, busy] = runs[len(runs) // 2]
                    print(f"  {what:<8} {policy:<6} {'busy' if busy else 'quiet':<6} "
                          f"{', '.join(f'{r:.3f}' for r in runs)} s", flush=True)
    label = {"build": "tutorial BUILD (1 epoch, 1,000 digits)",
             "convert": f"CONVERT {args.images:,} JPEGs",
             "search": f"SEARCH of {args.images:,} rows, top 4 (median of {SEARCHES})"}
    print()
    print("| statement | THANOSQL_THREADS | quiet s | busy s | busy / quiet |")
    print("|---|---|---|---|---|")
    for what in whats:
        for policy in policies:
            q, b = seconds[what, policy, False], seconds[what, policy, True]
            digits = 3 if what == "search" else 1
            print(f"| {label[what]} | {policy} | {q:.{digits}f} | {b:.{digits}f} | "
                  f"{b / q:.2f} |")
    if "cores" in policies:
        print()
        for what in whats:
            for policy in (p for p in policies if p != "cores"):
                q = seconds[what, policy, False] / seconds[what, "cores", False]
                b = seconds[what, policy, True] / seconds[what, "cores", True]
                print(f"{label[what]}: {policy} / cores = {q:.2f} quiet, {b:.2f} busy")


if __name__ == "__main__":
    main()

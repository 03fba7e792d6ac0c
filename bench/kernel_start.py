"""Time from kernel start to the first result: ThanoSQL's first SELECT against python3's `1+1`.

Both kernels are started the same way (jupyter_client, installed kernelspecs) in the same run,
alternating, and the median of several starts is compared. Usage:
    python bench/kernel_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from jupyter_client.manager import start_new_kernel


def first_result_seconds(kernel_name: str, code: str, cwd: str) -> float:
    started = time.perf_counter()
    km, kc = start_new_kernel(kernel_name=kernel_name, cwd=cwd, startup_timeout=60,
                              stderr=subprocess.DEVNULL)
    try:
        msg_id = kc.execute(code)
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and \
                    msg["msg_type"] == "execute_result":
                break
            if msg["msg_type"] == "error":
                raise RuntimeError(msg["content"]["evalue"])
        return time.perf_counter() - started
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        os.environ["THANOSQL_WORKSPACE"] = os.path.join(cwd, ".thanosql")
        # a table with rows, so the first SELECT opens the database and reads from it
        km, kc = start_new_kernel(kernel_name="thanosql", cwd=cwd, stderr=subprocess.DEVNULL)
        kc.execute_interactive("CREATE TABLE t (i INTEGER); INSERT INTO t VALUES (1), (2)",
                               timeout=60, output_hook=lambda msg: None)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        times: dict[str, list[float]] = {"python3: 1+1": [], "thanosql: SELECT": []}
        for _ in range(args.repeat):
            times["python3: 1+1"].append(first_result_seconds("python3", "1+1", cwd))
            times["thanosql: SELECT"].append(
                first_result_seconds("thanosql", "SELECT * FROM t", cwd))
    print(f"{'kernel: first cell':<20} {'median s':>9} {'min s':>7} {'max s':>7}"
          f"  (n={args.repeat}, start to first result)")
    for name, values in times.items():
        print(f"{name:<20} {statistics.median(values):9.3f} {min(values):7.3f} "
              f"{max(values):7.3f}")
    ratio = statistics.median(times["thanosql: SELECT"]) / statistics.median(
        times["python3: 1+1"])
    print(f"ratio thanosql / python3 (median): {ratio:.2f}  (goal: <= 1.3)")


if __name__ == "__main__":
    main()

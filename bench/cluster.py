"""CONVERT in the kernel against CONVERT on a Ray cluster, in one run, on this machine.

Runs itself again inside a network namespace with only loopback (Ray binds the machine's
outward address otherwise), makes --images 28x28 PNGs (the tutorial's size), builds a model,
then times CONVERT through the engine:

  - in the kernel (both cores, the kernel's own thread policy);
  - on a two-node cluster, each node one CPU, the nodes pinned to core 0 and core 1;
  - on a one-node cluster, one CPU, pinned to core 0;

and prints images/s, the ratios the issue asks for (cluster / kernel, two nodes / one) and the
time to the first batch. Then BUILD MODEL on --build-images of them (SimCLR, the tutorial's
defaults but for max_epochs=--epochs) the same three ways: in the kernel, on 1 worker (one
node) and on 2 workers (two nodes), with the training rate its progress reports (views/s: two
views an image), the statement's seconds and the time to the first step (Ray Train's start).
Usage:

    python bench/cluster.py [--images 100000] [--batch 256] [--build-images 5000] [--epochs 2]
    python bench/cluster.py --build-only --build-images 512 --epochs 1 \
        --build-options "backbone='resnet18', image_size=64, batch_size=64"
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import unshare  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(args: list[str], core: int, log: Path, temp: Path) -> subprocess.Popen[bytes]:
    ray = Path(sys.executable).parent / "ray"
    return subprocess.Popen(
        ["taskset", "-c", str(core), str(ray), "start", "--block", "--num-cpus=1",
         "--object-store-memory=200000000", "--node-ip-address=127.0.0.1",
         "--disable-usage-stats", f"--temp-dir={temp}", *args], stdout=open(log, "w"),
        stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def _stop(nodes: list[subprocess.Popen[bytes]]) -> None:
    for node in reversed(nodes):
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait(timeout=30)


def _wait(address: str, count: int) -> None:
    import ray

    host, port = address.split(":")
    for _ in range(240):   # a head takes seconds to answer
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            break
        except (OSError, ConnectionError) as e:
            last = e
            if ray.is_initialized():
                ray.shutdown()
            time.sleep(0.5)
    else:
        raise SystemExit(f"the head did not come up: {last}")
    try:
        for _ in range(240):
            if sum(n["Alive"] for n in ray.nodes()) >= count:
                return
            time.sleep(0.5)
        raise SystemExit("the nodes did not come up")
    finally:
        ray.shutdown()


def _convert(folder: Path, address: str | None, batch: int, table: str) -> tuple[float, float]:
    """(seconds, seconds to the first batch) of CONVERT USING m into ``table``."""
    from thanosql_kernel.engine import Run, Services, execute
    from thanosql_kernel.results import Progress
    from thanosql_kernel.settings import Settings
    from thanosql_kernel.syntax import parse

    env = {"THANOSQL_RAY_ADDRESS": address} if address else {}
    services = Services.open(Settings.from_env(cwd=folder, env=env))
    first: list[float] = []

    def report(progress: Progress) -> None:
        if progress.done and not first:
            first.append(time.monotonic())

    try:
        started = time.monotonic()
        for node in parse(f"CONVERT USING m OPTIONS (batch_size={batch}) AS SELECT * FROM "
                          f"{table}"):
            execute(node, services, Run({}, 1, report))
        return time.monotonic() - started, (first[0] - started) if first else float("nan")
    finally:
        services.close()


def _build(folder: Path, address: str | None, images: int, epochs: int, name: str,
           extra: str) -> tuple[float, float, float]:
    """(seconds, seconds to the first step, views/s the training reported last) of a BUILD."""
    from thanosql_kernel.engine import Run, Services, execute
    from thanosql_kernel.results import Progress
    from thanosql_kernel.settings import Settings
    from thanosql_kernel.syntax import parse

    env = {"THANOSQL_RAY_ADDRESS": address} if address else {}
    services = Services.open(Settings.from_env(cwd=folder, env=env))
    first: list[float] = []
    rate: list[float] = []

    def report(progress: Progress) -> None:
        if progress.unit == "steps" and progress.done and not first:
            first.append(time.monotonic())
        if "images/s" in progress.detail:
            rate.append(float(progress.detail.split(" images/s")[0].rsplit(" ", 1)[1]
                              .replace(",", "")))

    try:
        started = time.monotonic()
        for node in parse(f"BUILD MODEL {name} USING SimCLR OPTIONS (max_epochs={epochs}, "
                          f"seed=1{', ' + extra if extra else ''}) AS SELECT * FROM imgs "
                          f"LIMIT {images}"):
            execute(node, services, Run({}, 1, report))
        return (time.monotonic() - started, (first[0] - started) if first else float("nan"),
                2 * rate[-1] if rate else float("nan"))
    finally:
        services.close()


def inside(images: int, batch: int, build_images: int, epochs: int, extra: str,
           build_only: bool) -> None:
    from tests.helpers import TINY
    from thanosql_kernel.engine import Services, execute
    from thanosql_kernel.settings import Settings
    from thanosql_kernel.syntax import parse

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _images(folder, build_images if build_only else images)
        services = Services.open(Settings.from_env(cwd=folder, env={}))
        for cell in ("COPY imgs FROM 'imgs.csv'; COPY one FROM 'imgs.csv'; "
                     "COPY two FROM 'imgs.csv'",
                     f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} "
                     "AS SELECT * FROM imgs LIMIT 64"):
            for node in parse(cell):
                execute(node, services)
        services.close()
        rows: list[tuple[str, float, float]] = []
        builds = []
        if not build_only:
            seconds, first = _convert(folder, None, batch, "imgs")
            rows.append(("in the kernel (2 cores)", seconds, first))
        builds.append(("in the kernel (2 cores)", *_build(folder, None, build_images, epochs,
                                                           "b0", extra)))
        nodes: list[subprocess.Popen[bytes]] = []
        try:
            port = _port()
            address = f"127.0.0.1:{port}"
            temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))   # short, this run's
            nodes.append(_node(["--head", f"--port={port}", "--include-dashboard=false"], 0,
                               folder / "head.log", temp))
            _wait(address, 1)
            if not build_only:
                seconds, first = _convert(folder, address, batch, "one")
                rows.append(("Ray, 1 node (1 CPU, core 0)", seconds, first))
            builds.append(("Ray Train, 1 worker (1 node)",
                           *_build(folder, address, build_images, epochs, "b1", extra)))
            nodes.append(_node([f"--address={address}"], 1, folder / "node2.log", temp))
            _wait(address, 2)
            if not build_only:
                seconds, first = _convert(folder, address, batch, "two")
                rows.append(("Ray, 2 nodes (1 CPU each, cores 0 and 1)", seconds, first))
            builds.append(("Ray Train, 2 workers (2 nodes)",
                           *_build(folder, address, build_images, epochs, "b2", extra)))
        finally:
            _stop(nodes)
    if rows:
        print(f"\nCONVERT of {images:,} 28x28 PNGs, batch_size={batch}, {os.cpu_count()} CPUs\n")
        print("| where | seconds | images/s | first batch after |\n|---|---|---|---|")
        for name, seconds, first in rows:
            print(f"| {name} | {seconds:.1f} | {images / seconds:,.0f} | {first:.1f} s |")
        kernel, one, two = (images / r[1] for r in rows)
        print(f"\ncluster (2 nodes) / kernel: {two / kernel:.2f}x (goal >= 0.8)")
        print(f"2 nodes / 1 node: {two / one:.2f}x (goal >= 1.8)")
    print(f"\nBUILD MODEL on {build_images:,} of them, {epochs} epochs, "
          f"{extra or 'the default model'}\n")
    print("| where | seconds | first step after | training views/s |\n|---|---|---|---|")
    for name, seconds, first, views in builds:
        print(f"| {name} | {seconds:.1f} | {first:.1f} s | {views:,.0f} |")
    print(f"\n2 workers / 1 worker, views/s: {builds[2][3] / builds[1][3]:.2f}x; "
          f"2 workers / the kernel: {builds[2][3] / builds[0][3]:.2f}x")


def _images(folder: Path, count: int) -> None:
    """``count`` different 28x28 grey PNGs and their CSV (random strokes, fixed seed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "imgs").mkdir()
    lines = ["image_path,label"]
    for i in range(count):
        pixels = (rng.random((28, 28)) > 0.8).astype(np.uint8) * 255
        Image.fromarray(pixels).save(folder / "imgs" / f"{i}.png")
        lines.append(f"imgs/{i}.png,{i % 10}")
    (folder / "imgs.csv").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--build-images", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--build-options", default="",
                        help="more BUILD options, e.g. \"backbone='resnet18', image_size=64\"")
    parser.add_argument("--build-only", action="store_true", help="leave CONVERT out")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.images, args.batch, args.build_images, args.epochs, args.build_options,
               args.build_only)
        return
    script = (f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} "
              f"--inside --images {args.images} --batch {args.batch} "
              f"--build-images {args.build_images} --epochs {args.epochs} "
              f"--build-options {shlex.quote(args.build_options)}"
              + (" --build-only" if args.build_only else ""))
    sys.exit(subprocess.run([*unshare("n"), "sh", "-c", script],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode)


if __name__ == "__main__":
    main()

"""CONVERT and BUILD MODEL on a real two-node Ray cluster, through the real kernel.

Ray binds the machine's outward address unless it has none, so the cluster and the kernels
run in a network namespace that has only loopback (``unshare -n`` as root, ``unshare -rn``
otherwise, then ``ip link set lo up``). The cluster is started by the README's own recipe in
a shell in that namespace: each node a ``ray start --block`` of one CPU, the object store
capped, the dashboard and usage stats off. The test stops nodes by their process ids (and
those of their processes), never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .helpers import unshare

if TYPE_CHECKING:
    from tests.conftest import KernelSession

ROOT = Path(__file__).resolve().parents[1]


def test_convert_on_a_two_node_ray_cluster(tmp_path: Path) -> None:
    script = (f"ip link set lo up && exec {sys.executable} -c "
              f"'from tests.test_cluster import scenario; scenario(\"{tmp_path}\")'")
    done = subprocess.run([*unshare("n"), "sh", "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "cluster: all checks passed" in done.stdout, done.stdout[-3000:]
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith("cluster")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecipeNode:
    """A node the README's recipe started: its ``ray start`` wrote its process id to
    ``pid_file``. ``kill`` ends it and every process under it at once (SIGKILL)."""

    def __init__(self, pid_file: Path) -> None:
        self.pid = int(pid_file.read_text())

    def processes(self) -> list[int]:
        """The node's process and all below it."""
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    todo.extend(int(c) for c in (task / "children").read_text().split())
                except OSError:
                    pass
        return found

    def kill(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_for_exit(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_running(pid) for pid in pids):
            return
        time.sleep(0.2)
    raise AssertionError(f"processes still running: {pids}")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


#: joins the cluster once its head answers (a head takes seconds to come up)
_JOIN = ("import ray, socket, time\n"
         "host, port = '{address}'.split(':')\n"
         "for _ in range(600):\n"
         "    try:\n"
         "        socket.create_connection((host, int(port)), timeout=1).close()\n"
         "        ray.init(address='{address}', logging_level='ERROR', log_to_driver=False)\n"
         "        break\n"
         "    except (OSError, ConnectionError):\n"
         "        time.sleep(0.5)\n"
         "else: raise SystemExit('the head did not come up')\n")


def _on_cluster(address: str, code: str, timeout: float) -> None:
    """Run ``code`` in a driver of its own, joined to the cluster at ``address``."""
    subprocess.run([sys.executable, "-c", _JOIN.format(address=address) + code], check=True,
                   timeout=timeout, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def _wait_for_nodes(address: str, count: int) -> None:
    _on_cluster(address, f"for _ in range(600):\n"
                         f"    if sum(n['Alive'] for n in ray.nodes()) >= {count}: break\n"
                         f"    time.sleep(0.5)\n"
                         f"else: raise SystemExit('nodes did not come up')", timeout=400)


def scenario(folder: str) -> None:
    """Run in the namespace: two nodes, kernels on them, the checks."""
    from tests.conftest import KernelSession
    from tests.helpers import TINY, make_images
    from tests.test_scale_out import Shell, recipe, with_values

    home = Path(folder)
    make_images(home / "imgs", count=64, size=24)
    port = _free_port()
    # Ray's own folder, short (its sockets' paths must fit 107 bytes) and this run's alone
    # (a folder shared with another cluster on the machine makes `ray start` refuse)
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    shell = Shell()
    # the README's lines, but for the two this process already stands for: the namespace
    # it runs in, and the front end (the test's own kernels)
    lines = [line for line in with_values(recipe("ray"), rayport=port, raytemp=temp).splitlines()
             if not line.startswith((".venv/bin/jupyter", "unshare"))]
    shell.run("\n".join(lines))
    address = shell.value("THANOSQL_RAY_ADDRESS")
    assert address == f"127.0.0.1:{port}", address
    nodes = [RecipeNode(temp / "head.pid"), RecipeNode(temp / "node.pid")]
    kernels: list[KernelSession] = []
    try:
        _wait_for_nodes(address, 2)
        (home / "local").mkdir()
        local = KernelSession(home / "local")
        kernels.append(local)
        (home / "local" / "imgs").symlink_to(home / "imgs")
        (home / "local" / "imgs.csv").write_text((home / "imgs.csv").read_text())
        on_cluster = {"THANOSQL_RAY_ADDRESS": address, "RAY_USAGE_STATS_ENABLED": "0",
                      "THANOSQL_WORKSPACE": str(home / "local" / ".thanosql")}
        remote = KernelSession(home / "local", on_cluster)
        kernels.append(remote)

        def ok(kernel: KernelSession, cell: str) -> list[str]:
            reply = kernel.execute(cell, timeout=900)
            assert reply.status == "ok", (cell, reply.content.get("evalue"))
            return reply.texts

        ok(local, "COPY imgs FROM 'imgs.csv'; COPY imgs2 FROM 'imgs.csv'")
        ok(local, f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs")
        ok(local, "CONVERT USING m AS SELECT * FROM imgs")
        # the same workspace, CONVERT on the cluster: the same vectors
        started = time.monotonic()
        texts = ok(remote, "CONVERT USING m OPTIONS (batch_size=8) AS SELECT * FROM imgs2")
        print(f"cluster CONVERT of 64 images: {time.monotonic() - started:.1f} s", flush=True)
        assert any("on 2 workers of the Ray cluster" in t for t in texts), texts
        mine, theirs = _vectors(home, "imgs"), _vectors(home, "imgs2")
        assert mine.keys() == theirs.keys() and len(mine) == 64
        worst = _largest_difference(mine, theirs)
        assert worst <= 1e-4, worst
        print(f"cluster: max |difference| from the local CONVERT {worst:.2e}", flush=True)
        search = ("SELECT image_path FROM (SEARCH IMAGE images='imgs/3.png' USING m AS SELECT * "
                  "FROM imgs2) ORDER BY m_simclr_similarity1 DESC LIMIT 1")
        assert ok(remote, search)[-1].splitlines()[2].strip() == "imgs/3.png"

        # BUILD on the cluster: two Ray Train workers, 4 images a step each, train like the
        # local BUILD with 8 a step (test_models_parallel measures the tolerance in float32;
        # bf16, where this CPU has it, widens it: 0.004 measured here)
        started = time.monotonic()
        texts = ok(remote, f"BUILD MODEL m2 USING SimCLR {TINY.format(extra='')} AS "
                           "SELECT * FROM imgs")
        print(f"cluster BUILD of 64 images, 2 epochs: {time.monotonic() - started:.1f} s",
              flush=True)
        assert any("on 2 workers of the Ray cluster" in t for t in texts), texts[-1]
        local_card, cluster_card = _card(home, "m"), _card(home, "m2")
        assert cluster_card["workers"] == 2 and cluster_card["ray_address"] == address
        gap = max(abs(a - b) for a, b in zip(local_card["loss_per_epoch"],
                                              cluster_card["loss_per_epoch"], strict=True))
        print(f"cluster: BUILD on 2 workers, loss per epoch within {gap:.4f} of the local "
              "BUILD", flush=True)
        assert gap <= 0.05, (local_card["loss_per_epoch"], cluster_card["loss_per_epoch"])
        texts = ok(remote, "CONVERT USING m2 AS SELECT * FROM imgs2")
        assert ok(remote, search.replace("USING m ", "USING m2 ").replace(
            "m_simclr_similarity1", "m2_simclr_similarity1"))[-1].splitlines()[2].strip() \
            == "imgs/3.png"

        # the stop button: within 2 s, nothing kept, the cluster's CPUs free within 15 s
        before = ok(remote, "SELECT COUNT(*) AS n FROM imgs2 WHERE m_simclr IS NOT NULL")
        make_images(home / "local" / "big", count=400, size=24)
        many = ["image_path,label"] + [f"big/{i}.png,0" for i in range(400)]
        (home / "local" / "big.csv").write_text("\n".join(many) + "\n")
        ok(remote, "COPY big FROM 'big.csv'")
        pressed = time.monotonic() + 1.5
        reply = remote.execute("CONVERT USING m OPTIONS (batch_size=1) AS SELECT * FROM big",
                               timeout=60, interrupt_after=1.5)
        stopped = time.monotonic()
        assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt", \
            reply.content
        print(f"cluster: the stop answered {stopped - pressed:.2f} s after it was pressed",
              flush=True)
        assert stopped - pressed <= 2.0, stopped - pressed
        assert ok(remote, "SELECT COUNT(*) AS n FROM imgs2 WHERE m_simclr IS NOT NULL") == before
        assert "m_simclr" not in ok(remote, "SELECT * FROM big LIMIT 1")[-1].splitlines()[0]
        _wait_for_free_cpus(address, 2, deadline=stopped + 15)
        print(f"cluster: stopped, CPUs free {time.monotonic() - stopped:.1f} s after", flush=True)

        # the stop button in the middle of a BUILD on the cluster: the run ends, the CPUs free
        msg_id = remote.kc.execute("BUILD MODEL m3 USING SimCLR OPTIONS (max_epochs=500, "
                                   "batch_size=8) AS SELECT * FROM imgs")
        _wait_for_output(remote, msg_id, "epoch 1/500", timeout=900)
        remote.km.interrupt_kernel()
        pressed = time.monotonic()
        reply = remote.collect(msg_id, timeout=60)
        stopped = time.monotonic()
        assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt", \
            reply.content
        assert stopped - pressed <= 2.0, stopped - pressed
        assert "m3" not in "\n".join(ok(remote, "LIST MODEL"))
        _wait_for_free_cpus(address, 2, deadline=stopped + 15)
        print(f"cluster: BUILD stopped {stopped - pressed:.2f} s after the press, CPUs free "
              f"{time.monotonic() - stopped:.1f} s after", flush=True)

        # the work runs on the cluster: the kernel's own CPU time is a small part of the wall
        pid = remote.km.provisioner.process.pid
        cpu_before, wall_before = _cpu_seconds(pid), time.monotonic()
        ok(remote, "CONVERT USING m OPTIONS (batch_size=16) AS SELECT * FROM big")
        cpu, wall = _cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
        print(f"cluster: CONVERT of 400 images {wall:.1f} s, the kernel's CPU {cpu:.1f} s",
              flush=True)
        assert cpu < 0.5 * wall, (cpu, wall)
        converted = _vectors(home, "big")

        # two kernels at once on one cluster: both complete
        other = KernelSession(home / "local", on_cluster)
        kernels.append(other)
        ok(other, "COPY big2 FROM 'big.csv'")
        first = remote.kc.execute("CONVERT USING m OPTIONS (batch_size=16) AS SELECT * FROM big")
        second = other.kc.execute("CONVERT USING m OPTIONS (batch_size=16) AS SELECT * FROM big2")
        for kernel, msg_id in ((remote, first), (other, second)):
            reply = kernel.collect(msg_id, timeout=900)
            assert reply.status == "ok", reply.content.get("evalue")
        print("cluster: two kernels converted at once", flush=True)

        # SEARCH by shards on the cluster, 150 rows a shard at most: 400 rows in 3 shards,
        # the same rows and similarities as the kernel's own exact search
        sharded = KernelSession(home / "local", {**on_cluster,
                                                 "THANOSQL_SEARCH_SHARD_ROWS": "150"})
        kernels.append(sharded)
        top = ("SELECT image_path, m_simclr_similarity1 FROM (SEARCH IMAGE images='big/7.png' "
               "USING m AS SELECT * FROM big) ORDER BY m_simclr_similarity1 DESC LIMIT 10")
        expected = ok(local, top)[-1]
        assert expected.splitlines()[2].split()[0] == "big/7.png", expected
        started = time.monotonic()
        assert ok(sharded, top)[-1] == expected
        first = time.monotonic() - started
        shards = _shards_on(address)
        assert len(shards) == 3 and all(n.endswith(("1/3", "2/3", "3/3")) for n in shards), shards
        started = time.monotonic()
        assert ok(sharded, top)[-1] == expected
        print(f"cluster: SEARCH by 3 shards, the local answer: first {first:.1f} s (loading), "
              f"then {time.monotonic() - started:.2f} s", flush=True)
        # a shard's process killed: Ray starts it again, it reads its rows anew
        victim = sorted(shards)[0]
        os.kill(shards[victim], signal.SIGKILL)
        assert ok(sharded, top)[-1] == expected
        assert _shards_on(address)[victim] != shards[victim]
        # another kernel on the same database finds them loaded: the same actors answer
        later = KernelSession(home / "local", {**on_cluster, "THANOSQL_SEARCH_SHARD_ROWS": "150"})
        kernels.append(later)
        assert ok(later, top)[-1] == expected
        assert _shards_on(address).keys() == shards.keys()
        later.close()
        kernels.remove(later)
        print("cluster: a shard killed was started again; another kernel used the same shards",
              flush=True)
        # CONVERT again (a new collection): the old shards go, the next SEARCH makes new ones
        ok(sharded, "CONVERT USING m OPTIONS (batch_size=16) AS SELECT * FROM big")
        _wait_for_no_shards(address)
        again_top = ok(sharded, top)[-1]
        assert [line.split()[0] for line in again_top.splitlines()] == \
            [line.split()[0] for line in expected.splitlines()]
        renewed = _shards_on(address)
        assert len(renewed) == 3 and not renewed.keys() & shards.keys(), (renewed, shards)
        # the column dropped with SQL: its shards go with it
        ok(sharded, "ALTER TABLE big DROP COLUMN m_simclr")
        _wait_for_no_shards(address)
        print("cluster: a new CONVERT and a dropped column took their shards with them",
              flush=True)

        # a node killed in the middle: a retry, not the statement; every row once
        msg_id = remote.kc.execute("CONVERT USING m OPTIONS (batch_size=2) AS SELECT * FROM big")
        time.sleep(1.5)
        nodes[1].kill()
        killed = time.monotonic()
        reply = remote.collect(msg_id, timeout=900)
        assert reply.status == "ok", reply.content.get("evalue")
        count = ok(remote, "SELECT COUNT(*) AS n FROM big WHERE m_simclr IS NOT NULL")
        assert count[-1].split()[-1] == "400", count
        again = _vectors(home, "big")   # every row once, the same vectors (to rounding:
        assert again.keys() == converted.keys()   # the batches were 2 images, not 16)
        assert _largest_difference(again, converted) <= 1e-4
        print(f"cluster: a node killed mid-CONVERT, CONVERT completed "
              f"{time.monotonic() - killed:.1f} s later", flush=True)

        # the head goes in the middle of a CONVERT: a ServerError, the kernel alive (Ray ends a
        # driver 60 s after it lost its head: the kernel left at once), nothing kept
        held = _vectors(home, "big2")
        msg_id = remote.kc.execute("CONVERT USING m OPTIONS (batch_size=1) AS SELECT * FROM big2")
        time.sleep(1.5)
        nodes[0].kill()
        gone = time.monotonic()
        reply = remote.collect(msg_id, timeout=120)
        assert reply.status == "error" and reply.content["ename"] == "ServerError", reply.content
        assert address in reply.content["evalue"], reply.content["evalue"]
        print(f"cluster: the head went mid-CONVERT: ServerError {time.monotonic() - gone:.1f} s "
              "later", flush=True)
        assert _vectors(home, "big2") == held
        assert ok(remote, "SELECT COUNT(*) AS n FROM big2")[-1].split()[-1] == "400"
        # the cluster starts again on its address (the recipe once more): the same kernel
        # joins it again
        shell.run("\n".join(lines))
        nodes += [RecipeNode(temp / "head.pid"), RecipeNode(temp / "node.pid")]
        _wait_for_nodes(address, 2)
        texts = ok(remote, "CONVERT USING m OPTIONS (batch_size=32) AS SELECT * FROM imgs2")
        assert any("on 2 workers of the Ray cluster" in t for t in texts), texts
        print("cluster: the head went mid-CONVERT (ServerError, kernel alive); restarted, "
              "the kernel joined it again", flush=True)

        # an address nobody answers: one ServerError within 10 s
        nowhere = KernelSession(home / "local", {**on_cluster,
                                                 "THANOSQL_RAY_ADDRESS": "127.0.0.1:1"})
        kernels.append(nowhere)
        ok(nowhere, "SELECT 1 AS one")   # the kernel's own start is not the cluster's answer
        started = time.monotonic()
        reply = nowhere.execute("CONVERT USING m AS SELECT * FROM imgs2", timeout=60)
        assert reply.status == "error" and reply.content["ename"] == "ServerError", reply.content
        answered = time.monotonic() - started
        assert "127.0.0.1:1" in reply.content["evalue"] and answered < 10, answered
        print(f"cluster: an address nobody answers: ServerError in {answered:.1f} s", flush=True)
        # the README's stop: every process of the nodes it started ends
        for kernel in kernels:
            kernel.close()
        kernels.clear()
        processes = nodes[2].processes() + nodes[3].processes()
        shell.run(recipe("ray-stop"))
        _wait_for_exit(processes, timeout=30)
        print("cluster: the README's stop ended the nodes", flush=True)
        print("cluster: all checks passed", flush=True)
    finally:
        for kernel in kernels:
            kernel.close()
        for node in reversed(nodes):
            node.kill()
        shell.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_output(kernel: KernelSession, msg_id: str, text: str, timeout: float) -> None:
    """Read the request's output until some of it says ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kernel.kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        data = msg["content"].get("data", {})
        if text in str(data.get("text/plain", "")) + str(msg["content"].get("text", "")):
            return
    raise AssertionError(f"no output said {text!r}")


def _shards_on(address: str) -> dict[str, int]:
    """The SEARCH shards on the cluster: each one's name and its actor's process id."""
    code = ("from ray.util import list_named_actors\n"
            "for a in list_named_actors(all_namespaces=True):\n"
            "    if a['namespace'].startswith('thanosql-'):\n"
            "        try:\n"
            "            shard = ray.get_actor(a['name'], namespace=a['namespace'])\n"
            "            print('shard', a['name'], ray.get(shard.ready.remote(), timeout=60)[1])\n"
            "        except Exception:\n"   # killed a moment ago: gone
            "            pass\n")
    done = subprocess.run([sys.executable, "-c", _JOIN.format(address=address) + code],
                          check=True, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    return {name: int(pid) for _, name, pid in (
        line.split() for line in done.stdout.splitlines() if line.startswith("shard "))}


def _wait_for_no_shards(address: str) -> None:
    """The shards are gone (a kill takes Ray a moment), within 15 s."""
    deadline = time.monotonic() + 15
    while (left := _shards_on(address)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left


def _card(home: Path, model: str) -> dict:
    """The model card the registry keeps, read from the workspace's database."""
    import json

    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'local' / '.thanosql' / 'thanosql.db'}")
    try:
        with engine.connect() as conn:
            return json.loads(conn.exec_driver_sql(
                "SELECT card FROM thanosql_models WHERE name = ?", (model,)).scalar_one())
    finally:
        engine.dispose()


def _vectors(home: Path, table: str) -> dict[str, bytes]:
    """Each row's embedding, by image path, read from the workspace's database."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'local' / '.thanosql' / 'thanosql.db'}")
    try:
        with engine.connect() as conn:
            return {str(p): bytes(v) for p, v in conn.exec_driver_sql(
                f"SELECT image_path, m_simclr FROM {table}").all()}
    finally:
        engine.dispose()


def _largest_difference(one: dict[str, bytes], other: dict[str, bytes]) -> float:
    import numpy as np

    return max(float(np.abs(np.frombuffer(one[p], "<f4") - np.frombuffer(other[p], "<f4")).max())
               for p in one)


def _cpu_seconds(pid: int) -> float:
    """The user and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_free_cpus(address: str, cpus: int, deadline: float) -> None:
    _on_cluster(address, f"while time.monotonic() < {deadline}:\n"
                         f"    if ray.available_resources().get('CPU', 0) >= {cpus}: break\n"
                         f"    time.sleep(0.2)\n"
                         f"else: raise SystemExit('the cluster kept CPUs after the stop: ' + "
                         f"str(ray.available_resources()))", timeout=300)


def test_ray_missing_or_an_address_that_is_not_one_is_one_clear_error(tmp_path: Path) -> None:
    from tests.conftest import KernelSession
    from tests.helpers import TINY, make_images
    from thanosql_kernel.errors import OptionError
    from thanosql_kernel.settings import Settings

    for text in ("nonsense", "http://127.0.0.1:6379", "127.0.0.1"):
        try:
            Settings.from_env(cwd=tmp_path, env={"THANOSQL_RAY_ADDRESS": text})
        except OptionError as error:
            assert "THANOSQL_RAY_ADDRESS" in str(error) and "host:port" in str(error)
        else:
            raise AssertionError(f"{text!r} was taken for a Ray address")
    # a Python where `import ray` fails, as where the extra was not installed
    fake = tmp_path / "no-ray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    make_images(tmp_path / "imgs", count=16)
    build = f"BUILD MODEL m USING SimCLR {TINY.format(extra='')} AS SELECT * FROM imgs"
    plain = KernelSession(tmp_path)
    try:
        for cell in ("COPY imgs FROM 'imgs.csv'", build):
            assert plain.execute(cell, timeout=120).status == "ok"
        # workers= trains on a cluster: without one, an OptionError that says so
        reply = plain.execute(build.replace("seed=1", "seed=1, workers=2, overwrite=True"))
        assert reply.status == "error" and reply.content["ename"] == "OptionError", reply.content
        assert "workers=2" in reply.content["evalue"]
        assert "THANOSQL_RAY_ADDRESS" in reply.content["evalue"]
    finally:
        plain.close()
    kernel = KernelSession(tmp_path, {"THANOSQL_RAY_ADDRESS": "127.0.0.1:6390",
                                      "PYTHONPATH": f"{fake}:{ROOT}"})
    try:
        for cell in ("CONVERT USING m AS SELECT * FROM imgs",
                     build.replace("MODEL m ", "MODEL m2 ")):
            started = time.monotonic()
            reply = kernel.execute(cell, timeout=60)
            assert reply.status == "error" and reply.content["ename"] == "ServerError", \
                reply.content
            assert "127.0.0.1:6390" in reply.content["evalue"]
            assert "Ray is not installed" in reply.content["evalue"]
            assert "thanosql-kernel[ray]" in reply.content["evalue"]
            assert time.monotonic() - started < 10
        # the table is as it was, and every other statement works
        assert kernel.execute("SELECT * FROM imgs LIMIT 1").texts[-1].split()[:2] == \
            ["image_path", "label"]
        assert "m2" not in kernel.execute("LIST MODEL").texts[-1]
    finally:
        kernel.close()

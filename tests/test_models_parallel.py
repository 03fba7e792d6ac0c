"""Data-parallel SimCLR (``models.parallel``): N workers with B images each train like one
process with N x B, and unlike one with B.

The workers here are two local processes in a gloo process group, as Ray Train makes them on
the cluster (``test_cluster`` runs BUILD there through the kernel).

The tolerance: in float32 the two runs differ only in the order of floating-point sums
(BatchNorm's statistics summed per worker then added, the gradient summed over workers).
Measured here over 9 steps: the first step's loss equal to 3e-6, later steps drifting to
4e-4 as the updated weights carry the rounding on; the final embeddings within 0.005. The
tolerances below are 20-25 times those, and one process with batch B instead (what the workers
would train like without gathered negatives and global BatchNorm) differs by 0.3-0.6 a step.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from thanosql_kernel.cluster import plan_workers
from thanosql_kernel.errors import OptionError
from thanosql_kernel.models.config import parse_simclr_options
from thanosql_kernel.models.parallel import GlobalBatchNorm, Shard, global_batchnorm
from thanosql_kernel.models.train import embed, fit
from thanosql_kernel.models.transforms import BatchAugment

BATCH = 32


def _images(n: int = 96, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, 1, size, size), dtype=torch.uint8, generator=g)
    for i in range(n):
        r, c = torch.randint(0, size - 4, (2,), generator=g).tolist()
        x[i, :, r:r + 4, c:c + 3] = 230
    return x


def _config(batch: int):
    return parse_simclr_options({"max_epochs": 3, "batch_size": batch, "embedding_dim": 32,
                                 "projection_dim": 16, "device": "cpu", "seed": 7})


def _join(rank: int, size: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=size)


def _worker(rank: int, size: int, rendezvous: str, out: str) -> None:
    _join(rank, size, rendezvous)
    try:
        losses: list[float] = []
        model = fit(_images(), _config(BATCH), lambda p: losses.append(p.loss),
                    shard=Shard(rank, size, seed=7))
        torch.save({"losses": losses, "embeddings": embed(model, _images()),
                    "state": model.encoder.state_dict()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _single(batch: int) -> tuple[list[float], np.ndarray]:
    losses: list[float] = []
    model = fit(_images(), _config(batch), lambda p: losses.append(p.loss))
    return losses, embed(model, _images())


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("parallel")
    os.environ["THANOSQL_BF16"] = "0"   # float32: only the order of sums differs
    try:
        mp.spawn(_worker, args=(2, str(folder / "rendezvous"), str(folder / "out")), nprocs=2)
    finally:
        del os.environ["THANOSQL_BF16"]
    return [torch.load(folder / f"out.{r}", weights_only=False) for r in range(2)]


def test_two_workers_train_like_one_process_with_both_batches(
        two_workers: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THANOSQL_BF16", "0")
    torch.set_num_threads(1)
    one, one_embeddings = _single(BATCH)
    half, _ = _single(BATCH // 2)
    mine = np.array(two_workers[0]["losses"])
    assert len(mine) == len(one) == 9   # 96 images, 32 a step, 3 epochs
    assert abs(mine[0] - one[0]) <= 1e-4
    assert np.abs(mine - np.array(one)).max() <= 0.01
    assert np.abs(two_workers[0]["embeddings"] - one_embeddings).max() <= 0.1
    # the tolerance tells the two apart: B images a step trains otherwise
    assert np.abs(np.array(half[:len(one)]) - np.array(one)).max() >= 0.1


def test_every_worker_ends_with_the_same_model(two_workers: list[dict]) -> None:
    first, second = two_workers
    assert first["losses"] == second["losses"]
    assert np.array_equal(first["embeddings"], second["embeddings"])
    assert all(torch.equal(first["state"][k], second["state"][k]) for k in first["state"])


def test_a_workers_part_of_the_augmentation_is_its_rows_of_the_whole(tmp_path: Path) -> None:
    config = _config(BATCH)
    augment = BatchAugment(config, torch.tensor([0.2]), torch.tensor([0.3]))
    images = _images(10)
    views = images.repeat(config.views, 1, 1, 1)
    whole = augment(views, torch.Generator().manual_seed(3))
    for rank in range(3):
        shard = Shard(rank, 3, seed=0)
        rows = shard.view_rows(len(images), config.views)
        mine = shard.part(torch.arange(len(images)))
        part = augment(images[mine].repeat(config.views, 1, 1, 1),
                       torch.Generator().manual_seed(3), (len(views), rows))
        assert torch.equal(part, whole[rows])


def test_global_batchnorm_is_batchnorm_in_one_process(tmp_path: Path) -> None:
    _join(0, 1, str(tmp_path / "rendezvous"))
    try:
        torch.manual_seed(0)
        plain = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                              nn.Linear(4 * 36, 8), nn.BatchNorm1d(8))
        nn.init.uniform_(plain[1].weight)
        together = global_batchnorm(copy.deepcopy(plain))
        assert sum(isinstance(m, GlobalBatchNorm) for m in together.modules()) == 2
        x = torch.randn(5, 2, 8, 8) * 3 + 1
        for model in (plain, together):
            model.train()
            model(x).square().sum().backward()
        for a, b in zip(plain.parameters(), together.parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5)
        for a, b in zip(plain.buffers(), together.buffers(), strict=True):
            assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6)
        plain.eval(), together.eval()
        assert torch.allclose(plain(x), together(x), atol=1e-5)
        # a saved model loads into the plain layers
        plain.load_state_dict(together.state_dict())
    finally:
        dist.destroy_process_group()


def _node(cpus: int, gpus: int = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": float(cpus), **({"GPU": float(gpus)}
                                                                 if gpus else {})}}


def test_training_workers_fit_the_cluster() -> None:
    # one per node by default, with the CPUs that lets every node hold its worker
    assert plan_workers([_node(1), _node(1)], None) == (2, 1, False)
    assert plan_workers([_node(8), _node(4), _node(4, alive=False)], None) == (2, 4, False)
    # as many as asked, as wide as fits
    assert plan_workers([_node(8), _node(4)], 3) == (3, 4, False)
    assert plan_workers([_node(2)], 2) == (2, 1, False)
    # one per GPU where there are GPUs
    assert plan_workers([_node(16, 2), _node(16, 1)], None) == (3, 1, True)
    with pytest.raises(OptionError, match="workers=5: the Ray cluster has 3 CPUs"):
        plan_workers([_node(2), _node(1)], 5)
    with pytest.raises(OptionError, match="2 GPUs"):
        plan_workers([_node(8, 2)], 4)

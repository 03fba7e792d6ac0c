"""``backbone`` and ``pretrained``: torchvision's ResNets, from scratch or from ImageNet weights
read from the torch hub cache (TORCH_HOME). Nothing downloads here: the tests write weights
files of the right architecture into a temporary TORCH_HOME (torch.hub checks a file's hash
only when it downloads it)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from thanosql_kernel.errors import DataError, NotFoundError, OptionError
from thanosql_kernel.models import pretrained
from thanosql_kernel.models.config import TORCHVISION_BACKBONES
from thanosql_kernel.results import Message, Table
from thanosql_kernel.vectors import blobs_to_matrix

from .conftest import Engine, KernelSession
from .helpers import make_images, model_files

FAST = "max_epochs=1, batch_size=8, views=2, image_size=32, seed=3"


def search(model: str, query: str = "imgs/3.png") -> str:
    return (f"SELECT image_path FROM (SEARCH IMAGE images='{query}' USING {model} AS "
            f"SELECT image_path FROM imgs) ORDER BY {model}_simclr_similarity1 DESC LIMIT 3")


def write_weights(torch_home: Path, backbone: str, seed: int = 0) -> Path:
    """Random weights of torchvision's ``backbone``, saved where pretrained=True reads them."""
    torch.manual_seed(seed)
    path = torch_home / "hub" / "checkpoints" / TORCHVISION_BACKBONES[backbone][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(getattr(torchvision.models, backbone)().state_dict(), path)
    return path


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def images(engine: Engine) -> Engine:
    make_images(engine.cwd / "imgs", count=16)
    engine.run("COPY imgs FROM 'imgs.csv'")
    return engine


@pytest.mark.parametrize("backbone", sorted(TORCHVISION_BACKBONES))
def test_the_weights_files_are_torchvisions_own(backbone: str, torch_home: Path) -> None:
    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    name, url = TORCHVISION_BACKBONES[backbone]
    assert url == weights.url and name == Path(weights.url).name
    assert pretrained.weights_file(backbone) == \
        Path(torch.hub.get_dir()) / "checkpoints" / name


def test_missing_weights_fail_before_any_image_is_read(engine: Engine, torch_home: Path) -> None:
    # the paths do not exist: an error about them would mean the images were read first
    (engine.cwd / "ghosts.csv").write_text("image_path\nnowhere/1.png\nnowhere/2.png\n")
    engine.run("COPY ghosts FROM 'ghosts.csv'")
    started = time.monotonic()
    with pytest.raises(NotFoundError) as err:
        engine.run("BUILD MODEL m USING SimCLR OPTIONS (backbone='resnet18', pretrained=True, "
                   "max_epochs=0) AS SELECT * FROM ghosts")
    folder = torch_home / "hub" / "checkpoints"
    assert "resnet18-f37072fd.pth" in str(err.value) and str(folder) in str(err.value)
    assert TORCHVISION_BACKBONES["resnet18"][1] in err.value.hint
    assert time.monotonic() - started < 10   # the server probe times out after 5 s at most
    assert not engine.one("LIST MODEL").rows  # type: ignore[union-attr]


@pytest.mark.parametrize(("options", "words"), [
    ("pretrained=True", "needs a torchvision backbone"),
    ("backbone='resnet18', max_epochs=0", "max_epochs=0 trains nothing"),
    ("backbone='resnet34'", "must be one of 'small', 'resnet18', 'resnet50'"),
    ("backbone='small', pretrained=True, max_epochs=0", "needs a torchvision backbone"),
])
def test_options_that_do_not_go_together(images: Engine, options: str, words: str) -> None:
    with pytest.raises(OptionError, match=words):
        images.run(f"BUILD MODEL m USING SimCLR OPTIONS ({options}) AS SELECT * FROM imgs")
    assert not images.one("LIST MODEL").rows  # type: ignore[union-attr]


def test_a_file_that_is_not_the_weights_is_named(images: Engine, torch_home: Path) -> None:
    path = write_weights(torch_home, "resnet18")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="resnet18-f37072fd.pth is not readable"):
        images.run("BUILD MODEL m USING SimCLR OPTIONS (backbone='resnet18', pretrained=True, "
                   "max_epochs=0) AS SELECT * FROM imgs")
    torch.save(torchvision.models.resnet50().state_dict(), path)   # another network's
    with pytest.raises(DataError, match="does not fit its network"):
        images.run("BUILD MODEL m USING SimCLR OPTIONS (backbone='resnet18', pretrained=True, "
                   "max_epochs=0) AS SELECT * FROM imgs")
    assert not images.one("LIST MODEL").rows  # type: ignore[union-attr]


def test_max_epochs_0_embeds_with_the_imagenet_encoder_as_it_is(images: Engine,
                                                                torch_home: Path) -> None:
    path = write_weights(torch_home, "resnet18", seed=7)
    built = images.one("BUILD MODEL p USING SimCLR OPTIONS (backbone='resnet18', "
                       "pretrained=True, max_epochs=0, image_size=32) AS SELECT * FROM imgs")
    assert isinstance(built, Message)
    assert "resnet18 from ImageNet weights, not trained (max_epochs=0)" in built.text
    assert "512-d embeddings" in built.text
    images.run("CONVERT USING p AS SELECT * FROM imgs")
    rows = images.rows("SELECT image_path, p_simclr FROM imgs")
    by_path = dict(rows)
    stored = blobs_to_matrix([by_path[f"imgs/{i}.png"] for i in range(16)], 512)

    # the same numbers from torchvision's network with the file's weights, computed here:
    # grey repeated into 3 channels, scaled by ImageNet's mean and std averaged over them
    net = torchvision.models.resnet18()
    net.load_state_dict(torch.load(path, weights_only=True))
    net.fc = torch.nn.Identity()
    net.eval()
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(images.cwd / "imgs" / f"{i}.png")
                                  .resize((32, 32), Image.BILINEAR)) for i in range(16)])
    x = torch.from_numpy(pixels).float().div(255).unsqueeze(1)
    x = (x - np.mean((0.485, 0.456, 0.406))) / np.mean((0.229, 0.224, 0.225))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net(x.float().expand(-1, 3, -1, -1)), dim=1)
    assert np.allclose(stored, expected.numpy(), atol=2e-3)
    ranked = images.one(search("p"))
    assert isinstance(ranked, Table) and ranked.rows[0][0] == "imgs/3.png"
    card = (model_files(images, "p") / "card.json").read_text()
    assert '"backbone": "resnet18"' in card and "as they are (max_epochs=0)" in card


def test_fine_tuning_moves_the_pretrained_weights_but_not_far(images: Engine,
                                                              torch_home: Path) -> None:
    """pretrained=True starts from the file's weights (the backbone learns at a tenth of the
    rate); without it the same network starts from torchvision's random initialisation."""
    path = write_weights(torch_home, "resnet18", seed=11)
    start = torch.load(path, weights_only=True)
    for name, flag in (("tuned", True), ("scratch", False)):
        images.run(f"BUILD MODEL {name} USING SimCLR OPTIONS (backbone='resnet18', "
                   f"pretrained={flag}, {FAST}) AS SELECT * FROM imgs")
    def distance(model: str) -> float:
        state = torch.load(model_files(images, model) / "weights.pt", weights_only=True)
        w = state["encoder"]["backbone.net.layer4.1.conv2.weight"]
        return float((w - start["layer4.1.conv2.weight"]).norm() / start[
            "layer4.1.conv2.weight"].norm())
    assert distance("tuned") < 0.2 < distance("scratch")


def test_old_models_without_a_backbone_load_as_small() -> None:
    from thanosql_kernel.models.backbone import BackboneSpec

    spec = BackboneSpec.from_dict({"channels": 1, "image_size": 28, "feature_dim": 1024,
                                   "stem_downsamples": 1, "widths": [16, 32, 64]})
    assert spec.kind == "small"


def test_every_backbone_through_the_kernel(tmp_path: Path) -> None:
    """BUILD, CONVERT and SEARCH in a real kernel, with each backbone, pretrained on and off,
    and the pretrained encoders also untrained (max_epochs=0)."""
    home = tmp_path / "torch_home"
    for backbone in TORCHVISION_BACKBONES:
        write_weights(home, backbone)
    make_images(tmp_path / "imgs", count=16)
    kernel = KernelSession(tmp_path, env={"TORCH_HOME": str(home)})
    try:
        assert kernel.execute("COPY imgs FROM 'imgs.csv'").status == "ok"
        runs = [("small", "False", FAST)]
        for backbone in TORCHVISION_BACKBONES:
            runs += [(backbone, "False", FAST), (backbone, "True", FAST),
                     (backbone, "True", "max_epochs=0, image_size=32")]
        for i, (backbone, flag, rest) in enumerate(runs):
            model = f"m{i}"
            reply = kernel.execute(f"BUILD MODEL {model} USING SimCLR OPTIONS (backbone="
                                   f"'{backbone}', pretrained={flag}, {rest}) AS SELECT * "
                                   f"FROM imgs", timeout=300)
            assert reply.status == "ok", (backbone, flag, reply.content)
            text = reply.of("execute_result")[0]["data"]["text/plain"]
            assert text.startswith(f"Success: built {model} (SimCLR")
            assert (backbone in text) == (backbone != "small")
            assert ("ImageNet" in text) == (flag == "True")
            reply = kernel.execute(f"CONVERT USING {model} AS SELECT * FROM imgs", timeout=300)
            assert reply.status == "ok", reply.content
            reply = kernel.execute(search(model), timeout=120)
            assert reply.status == "ok", reply.content
            assert reply.texts[-1].splitlines()[2].strip().startswith("imgs/3.png"), \
                reply.texts[-1]
    finally:
        kernel.close()


def test_completion_and_inspect_know_the_new_options(engine: Engine) -> None:
    from thanosql_kernel import editing

    head = "BUILD MODEL m USING SimCLR OPTIONS ("
    for typed, expected in (("back", ["backbone"]), ("pretr", ["pretrained"]),
                            ("backbone=", ["'small'", "'resnet18'", "'resnet50'"]),
                            ("pretrained=", ["True", "False"])):
        code = head + typed
        assert editing.complete(code, len(code), engine.services)["matches"] == expected, typed
    shown = editing.inspect(head + "pretrained=True)", len(head) + 4, engine.services)
    assert shown is not None and "ImageNet weights" in shown["text/plain"]
    assert "TORCH_HOME" in shown["text/plain"]

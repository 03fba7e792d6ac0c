"""SimCLR option validation: unknown names, wrong types, out-of-range values, no torch import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from thanosql_kernel.errors import OptionError
from thanosql_kernel.models.config import SIMCLR_OPTION_DOCS, SimCLRConfig, parse_simclr_options


def test_defaults_and_documented_names_agree() -> None:
    cfg = parse_simclr_options({})
    assert cfg == SimCLRConfig()
    assert cfg.max_epochs == 5 and cfg.batch_size == 16 and cfg.views == 16
    assert cfg.device == "auto"
    assert not cfg.flip   # flipped digits are other symbols: off by default
    for name, line in SIMCLR_OPTION_DOCS.items():
        assert "default" in line, name


def test_values_are_parsed() -> None:
    cfg = parse_simclr_options({"MAX_EPOCHS": 2, "learning_rate": 1, "crop_scale": 0.3,
                                "blur_sigma": [0.5, 2], "flip": True, "device": "CPU",
                                "seed": None, "image_size": 32})
    assert cfg.max_epochs == 2
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.crop_scale == (0.3, 1.0)
    assert cfg.blur_sigma == (0.5, 2.0)
    assert cfg.flip is True and cfg.device == "cpu" and cfg.seed is None
    assert cfg.image_size == 32
    assert cfg.to_dict()["crop_scale"] == [0.3, 1.0]


def test_unknown_option_lists_valid_ones_and_the_closest() -> None:
    with pytest.raises(OptionError) as err:
        parse_simclr_options({"epochs": 3})
    text = str(err.value)
    assert "no option 'epochs'" in text and "Did you mean 'max_epochs'?" in text
    for name in ("max_epochs", "batch_size", "crop_scale", "flip"):
        assert name in text


@pytest.mark.parametrize("name,value", [
    ("max_epochs", 2.5), ("max_epochs", True), ("max_epochs", "3"), ("batch_size", None),
    ("learning_rate", "fast"), ("learning_rate", False), ("flip", 1), ("flip", "yes"),
    ("crop_scale", "big"), ("crop_scale", [0.2]), ("crop_scale", [0.2, True]),
    ("device", 0), ("seed", 1.5), ("temperature", [0.1, 0.2]),
])
def test_wrong_type_names_option_value_and_allowed(name: str, value: object) -> None:
    with pytest.raises(OptionError) as err:
        parse_simclr_options({name: value})
    text = str(err.value)
    assert name in text and repr(value) in text and "must be" in text


@pytest.mark.parametrize("name,value", [
    ("max_epochs", -1), ("batch_size", 1), ("learning_rate", 0), ("learning_rate", -1e-3),
    ("temperature", 0.0), ("image_size", 4), ("image_size", 5000), ("embedding_dim", 4),
    ("embedding_dim", 4096), ("views", 1), ("views", 65), ("crop_scale", 0),
    ("crop_scale", 1.5), ("crop_scale", [0.9, 0.5]),
    ("rotation", 181),
    ("rotation", -5), ("stroke", 1.5), ("stroke", -0.2), ("color_jitter", 1.2), ("blur", 2),
    ("noise", -0.1), ("hue", 0.6),
    ("device", "tpu"), ("device", "cuda:x"), ("learning_rate", float("nan")),
])
def test_out_of_range_is_an_option_error(name: str, value: object) -> None:
    with pytest.raises(OptionError) as err:
        parse_simclr_options({name: value})
    assert name in str(err.value) and "must be" in str(err.value)


def test_options_module_does_not_import_torch() -> None:
    code = ("import sys, thanosql_kernel.models.config as o, thanosql_kernel.models as m; "
            "o.parse_simclr_options({}); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_views_default_to_the_backbones_own_and_a_given_count_is_kept() -> None:
    # 16 views of each small image; 8 of a 224-px photo, whose views fill memory far sooner
    assert parse_simclr_options({}).views == 16
    assert parse_simclr_options({"backbone": "resnet50"}).views == 8
    assert parse_simclr_options({"backbone": "resnet18", "views": 12}).views == 12
    assert parse_simclr_options({"views": 2}).views == 2
    with pytest.raises(OptionError, match="views"):
        parse_simclr_options({"views": 1})

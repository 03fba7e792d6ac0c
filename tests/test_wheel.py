"""`pip install` alone sets the kernel up: the wheel carries the kernelspec and the prebuilt
JupyterLab extension as data files for the environment's share/jupyter/, and nothing built
for development (node_modules, tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel .` builds from this checkout (with the extension `make` built)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True,
                   timeout=300)
    [built] = out.glob("thanosql_kernel-*.whl")
    return built


def test_the_wheel_carries_the_kernelspec_and_the_extension(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("/data/", 1)[0] for n in names if ".data/data/" in n) + "/data/"
    share = sorted(n[len(data):] for n in names if n.startswith(data))
    spec = "share/jupyter/kernels/thanosql/"
    assert {f"{spec}kernel.json", f"{spec}logo-32x32.png", f"{spec}logo-64x64.png"} <= set(share)
    kernel = json.loads(zipfile.ZipFile(wheel).read(f"{data}{spec}kernel.json"))
    # "python": Jupyter starts the kernel with its own interpreter, the environment's
    assert kernel["argv"][:3] == ["python", "-m", "thanosql_kernel"]
    assert kernel["language"] == "thanosql" and kernel["display_name"] == "ThanoSQL"
    extension = "share/jupyter/labextensions/thanosql-highlight/"
    assert f"{extension}package.json" in share
    assert any(n.startswith(f"{extension}static/remoteEntry.") for n in share), share
    assert not [n for n in names if "node_modules" in n or n.startswith("tests/")]
    assert wheel.stat().st_size < 2_000_000, wheel.stat().st_size


def test_jupyter_finds_what_the_wheel_installs(wheel: Path, tmp_path: Path) -> None:
    """The wheel's files, installed under a prefix as pip installs them into a venv, are
    what Jupyter and JupyterLab look for there: the kernel by name, the extension enabled."""
    prefix = tmp_path / "env"
    # --ignore-installed: pip would otherwise uninstall this checkout's own (editable) install
    # from the running environment before installing into the prefix
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed",
                    "-q", "--prefix", str(prefix), str(wheel)], check=True, capture_output=True,
                   timeout=300)
    still = subprocess.run([sys.executable, "-c", "import thanosql, thanosql_kernel; "
                            "print(thanosql_kernel.__file__)"], capture_output=True, text=True)
    assert still.returncode == 0 and str(ROOT) in still.stdout, still.stderr
    share = prefix / "share" / "jupyter"
    env = {**os.environ, "JUPYTER_PATH": str(share), "JUPYTER_PREFER_ENV_PATH": "0"}
    found = subprocess.run(
        [sys.executable, "-c",
         "import json; from jupyter_client.kernelspec import KernelSpecManager as K; "
         "print(json.dumps(K().get_all_specs()['thanosql']))"],
        check=True, capture_output=True, text=True, env=env, timeout=120)
    spec = json.loads(found.stdout)
    assert Path(spec["resource_dir"]) == share / "kernels" / "thanosql"
    assert spec["spec"]["argv"][0] == "python"
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter")), "labextension", "list"],
        capture_output=True, text=True, env=env, timeout=120)
    text = listed.stdout + listed.stderr
    assert str(share / "labextensions") in text and "thanosql-highlight" in text, text
    assert "enabled" in text.split("thanosql-highlight", 1)[1].splitlines()[0], text

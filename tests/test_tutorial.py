"""The tutorial notebook, executed the way nbconvert does, on every backend this run has."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import server_env

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "image_search.ipynb"
SIM = "my_image_search_model_simclr_similarity1"


def run_tutorial(folder: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict:
    folder.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with monkeypatch.context() as m:
        for key in ("THANOSQL_DATABASE_URL", "THANOSQL_CHROMA_URL", "THANOSQL_WORKSPACE"):
            m.delenv(key, raising=False)
        for key, value in env.items():
            m.setenv(key, value)
        NotebookClient(nb, kernel_name="thanosql", timeout=600,
                       resources={"metadata": {"path": str(folder)}}).execute()
    outputs = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs[cell.source] = cell.outputs
    return outputs


def texts(outputs: list) -> list[str]:
    return [o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in outputs]


def top4(outputs: dict) -> list[str]:
    [printed] = [o for src, o in outputs.items() if src.startswith("%%thanosql\nPRINT IMAGE")]
    return [o["data"]["text/plain"].split()[0] for o in printed
            if "<img" in o.get("data", {}).get("text/html", "")]


def test_the_tutorial_runs_on_every_backend_with_the_same_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {"embedded": run_tutorial(tmp_path / "embedded", {}, monkeypatch)}
    if os.environ.get("THANOSQL_DATABASE_URL") or os.environ.get("THANOSQL_CHROMA_URL"):
        with server_env() as env:
            runs["servers"] = run_tutorial(tmp_path / "servers", env, monkeypatch)
    for backend, outputs in runs.items():
        for source, cell_outputs in outputs.items():
            assert not [o for o in cell_outputs if o.output_type == "error"], (backend, source)
        copies = [t for src, o in outputs.items() if "COPY mnist" in src for t in texts(o)]
        assert copies == ["Success: 1,000 rows copied into mnist_train",
                          "Success: 200 rows copied into mnist_test"]
        [head] = [texts(o)[-1] for src, o in outputs.items() if "LIMIT 5" in src]
        assert head.splitlines()[0].split() == ["image_path", "filename", "label"]
        assert len(head.splitlines()) == 2 + 5
        [search] = [texts(o)[-1] for src, o in outputs.items()
                    if src.startswith("%%thanosql\nSEARCH IMAGE")]
        assert search.splitlines()[0].split()[-1] == SIM
        assert "200 rows" in search
        found = top4(outputs)
        assert len(found) == 4 and found[0].endswith("/923.jpg")
        labels = dict(re.findall(r"(\S+/\d+\.jpg)\s+(\d)\s", "\n".join(
            texts(o)[-1] for src, o in outputs.items() if "top_k=10" in src)))
        eights = sum(labels.get(path) == "8" for path in found[1:])
        assert eights >= 2, f"{backend}: top 4 for 923.jpg after itself: {found[1:]}"
    assert len({tuple(top4(o)) for o in runs.values()}) == 1

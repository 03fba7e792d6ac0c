"""The tutorial notebook, executed the way nbconvert does, on every backend this run has."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from thanosql_kernel.vectors import blobs_to_matrix

from .conftest import server_env

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "image_search.ipynb"
COLUMN = "my_image_search_model_simclr"
SIM = f"{COLUMN}_similarity1"


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
    # exported to Markdown, the images are image files beside it (what GitHub shows), each
    # followed by its caption
    from nbconvert import MarkdownExporter

    body, resources = MarkdownExporter().from_notebook_node(nb)
    pngs = [name for name in resources["outputs"] if name.endswith(".png")]
    # PRINT IMAGE's four, and PRINT EMBEDDING's map
    assert len(pngs) == 5 and all(f"]({name})" in body for name in pngs), sorted(
        resources["outputs"])
    assert "PRINT EMBEDDING: 200 rows of mnist_test.my_image_search_model_simclr" in body
    assert "tutorial_data/mnist_data/test/923.jpg  my_image_search_model" in body
    outputs = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs[cell.source] = cell.outputs
    return outputs


def texts(outputs: list) -> list[str]:
    return [o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in outputs]


def top4(outputs: dict) -> list[str]:
    """The paths PRINT IMAGE shows, from each image's caption (the output after it)."""
    [printed] = [o for src, o in outputs.items() if src.startswith("%%thanosql\nPRINT IMAGE")]
    return [caption["text"].split()[0]
            for image, caption in zip(printed, printed[1:], strict=False)
            if "image/png" in image.get("data", {}) and caption.output_type == "stream"]


def neighbour_precision(workspace: Path, k: int = 3) -> float:
    """The share of each test image's k nearest images (by its stored vector) that have its
    label: what the tutorial's model is for, measured over all 200 images, not one query."""
    with sqlite3.connect(workspace / ".thanosql" / "thanosql.db") as db:
        rows = db.execute(f"SELECT label, {COLUMN} FROM mnist_test").fetchall()
    labels = np.array([label for label, _ in rows])
    vectors = blobs_to_matrix([blob for _, blob in rows]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    nearest = np.argsort(-scores, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


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
        [mapped] = [o for src, o in outputs.items() if src.startswith("PRINT EMBEDDING")]
        assert [o.output_type for o in mapped] == ["display_data", "stream"]
        assert mapped[0].metadata["image/png"] == {"width": 900, "height": 648}
        assert mapped[1].text.startswith(f"PRINT EMBEDDING: 200 rows of mnist_test.{COLUMN}")
        [evaluated] = [texts(o)[-1] for src, o in outputs.items() if src.startswith("EVALUATE")]
        header, _, model, raw = evaluated.splitlines()[:4]
        assert header.split()[:3] == ["method", "k", "rows"]
        assert model.split()[:3] == ["my_image_search_model", "4", "200"]
        assert raw.split()[:3] == ["raw_pixels", "4", "200"]
        # the 1-epoch model's precision@4 (0.78-0.80 over seeds here; chance 0.10)
        assert float(model.split()[6]) >= 0.5
        found = top4(outputs)
        assert len(found) == 4 and found[0].endswith("/923.jpg")
        labels = dict(re.findall(r"(\S+/\d+\.jpg)\s+(\d)\s", "\n".join(
            texts(o)[-1] for src, o in outputs.items() if "top_k=10" in src)))
        eights = sum(labels.get(path) == "8" for path in found[1:])
        assert eights >= 1, f"{backend}: top 4 for 923.jpg after itself: {found[1:]}"
    # One epoch on 1,000 images: which eights come next after 923.jpg moves with the float
    # rounding of the machine (seeds 0-7 here: 1 to 3 of its top 3 are eights, always at
    # least 1), so the model's quality is judged over every test image: 10 labels, 20 each,
    # chance is 19/199 = 0.10; seeds 0-7 measured 0.71-0.76.
    assert neighbour_precision(tmp_path / "embedded") >= 0.5
    assert len({tuple(top4(o)) for o in runs.values()}) == 1

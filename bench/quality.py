"""Search quality of the default SimCLR model against raw pixels and PCA on pixels, by EVALUATE.

    python bench/quality.py [--sets mnist,glyphs,shapes,heldout] [--options "max_epochs=1"]
                            [--threads N] [--keep DIR]
    python bench/quality.py --rules [--candidates "OPTS;OPTS;…"] [--seeds 0,1,2]

For every image set (see ``bench/datasets.py``) in a fresh temporary workspace:

1. ``COPY`` the train and test CSVs into tables, ``BUILD MODEL … USING SimCLR AS SELECT *
   FROM <train>`` with DEFAULT options (plus ``--options`` if given), timed;
2. ``CONVERT USING <model> AS SELECT * FROM <test>``;
3. ``EVALUATE USING <model> OPTIONS (k=…, queries=None) AS SELECT * FROM <test>`` for k in
   1, 4 and 10: precision@k of the model and of raw pixels, the product's own measure (each
   test image's k most similar other test images; the share with its label).

All statements go through the engine (parse + execute), as a notebook cell would. Labels are
only read to score. Beside them, PCA on pixels (64 components fitted on the TRAINING images
with numpy's SVD, centred on their mean), scored the same way here in numpy.

For the tutorial's data it also prints the top 4 (after itself) for ``test/923.jpg``, the
image the tutorial searches with (one SEARCH IMAGE).

``--rules`` judges the default (or each of ``--candidates``, BUILD options separated by ``;``,
an empty one being the defaults) against issue 24's rules and prints one table:

- at the default ``max_epochs``, the mean P@4 over ``--seeds`` beats raw pixels by >= 0.10 on
  the tutorial digits and >= 0.03 on every other set;
- the tutorial's own cell (``max_epochs=1``, default seed): PRINT IMAGE of ``923.jpg`` shows
  at least 3 eights among its 4 images (itself included, so 2 of the 3 best others), and the
  1-epoch model's P@4 over the 200 test digits is at least 0.770.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets as bench_sets  # noqa: E402

KS = (1, 4, 10)
PCA_COMPONENTS = 64
TUTORIAL_QUERY = "923.jpg"
#: issue 14's rules: P@4 margin over raw pixels, per set (others: OTHER_MARGIN)
MARGINS = {"mnist": 0.10}
OTHER_MARGIN = 0.03
#: the 1-epoch tutorial model's P@4 must stay at least this (its value before issue 14)
ONE_EPOCH_P4 = 0.770


def precision_from_scores(scores: np.ndarray, labels: list[str]) -> list[float]:
    """scores (Q, Q): similarity of query i to test row j (higher = more alike); the
    diagonal (the query itself) is excluded. Returns precision@k for every k in KS."""
    s = np.array(scores, dtype=np.float64)
    np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    lab = np.asarray(labels)
    same = lab[order[:, : max(KS)]] == lab[:, None]
    return [float(same[:, :k].mean()) for k in KS]


def cosine_scores(vectors: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
    return v @ v.T


def pixels(root: Path, paths: list[str]) -> np.ndarray:
    """(N, pixels) float64 in 0..1, decoded exactly as the model sees them."""
    from thanosql_kernel.models import load_images

    x = load_images([str(root / p) for p in paths], None)
    return x.reshape(len(x), -1).double().numpy() / 255.0


def pca_scores(train: np.ndarray, test: np.ndarray, k: int = PCA_COMPONENTS) -> np.ndarray:
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    return cosine_scores((test - mean) @ vt[:k].T)


class Workspace:
    """A temporary ThanoSQL workspace driven statement by statement through the engine."""

    def __init__(self, root: Path, environment: bool = False) -> None:
        """``environment``: settings from THANOSQL_* variables too, not only the defaults."""
        from thanosql_kernel.engine import Services
        from thanosql_kernel.settings import Settings

        self.root = root
        self.services = Services.open(Settings.from_env(cwd=root,
                                                        env=None if environment else {}))

    def run(self, sql: str):
        from thanosql_kernel.engine import execute
        from thanosql_kernel.syntax import parse

        result = None
        for node in parse(sql):
            result = execute(node, self.services)
        return result

    def rows(self, sql: str):
        """Every row of one query statement."""
        from thanosql_kernel.engine import rows
        from thanosql_kernel.syntax import parse

        (node,) = parse(sql)
        return rows(node, self.services)

    def close(self) -> None:
        self.services.close()


def evaluated(ws: Workspace, model: str, table: str) -> tuple[list[float], list[float]]:
    """precision@k for every k in KS, the model's and raw pixels', by EVALUATE over every
    row of the test table (each row's k most similar other rows; the product's measure)."""
    ws.run(f"CONVERT USING {model} AS SELECT * FROM {table}")
    by_model, by_raw = [], []
    for k in KS:
        result = ws.run(f"EVALUATE USING {model} OPTIONS (k={k}, queries=None) AS "
                        f"SELECT * FROM {table}")
        rows = {r[0]: dict(zip(result.columns, r, strict=True)) for r in result.rows}
        by_model.append(float(rows[model]["precision_at_k"]))
        by_raw.append(float(rows["raw_pixels"]["precision_at_k"]))
    return by_model, by_raw


def top4_of(ws: Workspace, model: str, table: str, query: str) -> list[str]:
    """The 4 image paths SEARCH IMAGE ranks first for ``query`` (itself excluded)."""
    column = f"{model}_simclr_similarity1"
    result = ws.rows(f"SELECT image_path, {column} FROM (SEARCH IMAGE images='{query}' "
                     f"USING {model} AS SELECT * FROM {table}) ORDER BY {column} DESC "
                     "LIMIT 5")
    return [p for p, _ in result.rows if p != query][:4]


SETS = {"mnist": bench_sets.mnist, "glyphs": bench_sets.glyphs, "shapes": bench_sets.shapes,
        "heldout": bench_sets.heldout}


def evaluate(kind: str, options: str, keep: Path | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        s = SETS[kind](root)
        ws = Workspace(root)
        try:
            for table, csv in ((s.train_table, s.train_csv), (s.test_table, s.test_csv)):
                ws.run(f"COPY {table} OPTIONS (overwrite=True) FROM \"{csv}\"")
            model = f"quality_{kind}"
            opts = f" OPTIONS ({options}, overwrite=True)" if options else \
                " OPTIONS (overwrite=True)"
            t0 = time.perf_counter()
            msg = ws.run(f"BUILD MODEL {model} USING SimCLR{opts} AS SELECT * FROM "
                         f"{s.train_table}")
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            by_model, by_raw = evaluated(ws, model, s.test_table)
            search_seconds = time.perf_counter() - t1
            top = None
            if kind == "mnist":
                query = next(p for p in s.test_paths if p.endswith("/" + TUTORIAL_QUERY))
                top = top4_of(ws, model, s.test_table, query)
        finally:
            ws.close()
        train_px, test_px = pixels(root, s.train_paths), pixels(root, s.test_paths)
        out: dict[str, object] = {
            "set": s.name, "build": getattr(msg, "text", str(msg)), "seconds": seconds,
            "search_seconds": search_seconds, "path": "EVALUATE",
            "model": by_model, "raw": by_raw,
            "pca": precision_from_scores(pca_scores(train_px, test_px), s.test_labels),
        }
        if top is not None:
            label = dict(zip(s.test_paths, s.test_labels, strict=True))
            i = s.test_paths.index(query)
            out["query"] = (f"test/{TUTORIAL_QUERY} (label {s.test_labels[i]}): top 4 labels "
                            f"{[label[p] for p in top]}")
            # PRINT IMAGE shows the query itself (an 8) and its 3 best others
            out["eights"] = 1 + sum(label[p] == s.test_labels[i] for p in top[:3])
        return out


def _joined(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def rules(candidates: list[str], sets: list[str], seeds: list[int]) -> None:
    """Judge every candidate against issue 14's rules; one table, a verdict per rule."""
    print("| candidate | set | P@4 mean (seeds) | raw | margin | needed | 1-epoch 923 eights | "
          "1-epoch P@4 | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cand in candidates:
        fails = []
        for kind in sets:
            runs = [evaluate(kind, _joined(cand, f"seed={seed}"), None) for seed in seeds]
            p4 = [r["model"][1] for r in runs]   # type: ignore[index]
            raw = runs[0]["raw"][1]   # type: ignore[index]
            need = MARGINS.get(kind, OTHER_MARGIN)
            margin = float(np.mean(p4)) - raw
            extra = ["", ""]
            if kind == "mnist":
                one = evaluate(kind, _joined(cand, "max_epochs=1"), None)
                extra = [f"{one['eights']} ({one['query'].split('labels ')[1]})",
                         f"{one['model'][1]:.3f}"]   # type: ignore[index]
                if one["eights"] < 3:   # type: ignore[operator]
                    fails.append("923 eights")
                if one["model"][1] < ONE_EPOCH_P4:   # type: ignore[index]
                    fails.append("1-epoch P@4")
            if margin < need:
                fails.append(f"{kind} margin")
            print(f"| {cand or 'defaults'} | {kind} | {np.mean(p4):.3f} "
                  f"({', '.join(f'{v:.3f}' for v in p4)}) | {raw:.3f} | {margin:+.3f} | "
                  f"{need:+.2f} | {extra[0]} | {extra[1]} | "
                  f"{'fails ' + ', '.join(fails) if fails else 'passes so far'} |", flush=True)
        print(f"| {cand or 'defaults'} | **all** | | | | | | | "
              f"**{'fails: ' + ', '.join(fails) if fails else 'passes every rule'}** |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="mnist,glyphs,shapes,heldout")
    ap.add_argument("--rules", action="store_true", help="judge against issue 14's rules")
    ap.add_argument("--candidates", default="",
                    help="with --rules: BUILD options of each candidate, separated by ';'")
    ap.add_argument("--seeds", default="0,1,2", help="with --rules: the seeds averaged")
    ap.add_argument("--options", default="", help="extra BUILD MODEL options, e.g. max_epochs=1")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--keep", type=Path, default=None, help="workspace folder to keep")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; BUILD MODEL options: "
          f"{args.options or 'defaults'}", flush=True)
    if args.rules:
        rules(args.candidates.split(";"), [k.strip() for k in args.sets.split(",")],
              [int(v) for v in args.seeds.split(",")])
        return
    rows: list[tuple[str, str, list[float], str]] = []
    for kind in args.sets.split(","):
        r = evaluate(kind.strip(), args.options, args.keep)
        print(f"{r['set']}: {r['build']}  [search via {r['path']}, "
              f"{r['search_seconds']:.1f} s]", flush=True)
        if "query" in r:
            print(f"  {r['query']}", flush=True)
        label = f"SimCLR ({args.options})" if args.options else "SimCLR (default)"
        rows.append((str(r["set"]), label, r["model"], f"{r['seconds']:.1f}"))
        rows.append((str(r["set"]), "raw-pixel cosine", r["raw"], "-"))
        rows.append((str(r["set"]), f"PCA-{PCA_COMPONENTS} on pixels", r["pca"], "-"))
        m, raw = r["model"], r["raw"]
        print(f"  P@4 model - raw = {m[1] - raw[1]:+.3f}", flush=True)
    print()
    header = f"| {'image set':<34} | {'method':<18} | " + " | ".join(
        f"P@{k:<3}" for k in KS) + " | train s |"
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    for name, method, p, sec in rows:
        print(f"| {name:<34} | {method:<18} | " + " | ".join(f"{v:.3f}" for v in p)
              + f" | {sec:>7} |")


if __name__ == "__main__":
    main()

"""The tutorial's BUILD MODEL through the engine, timed, and embedding speed on the same device.

Runs GET THANOSQL DATASET, the two COPY cells and the tutorial's BUILD MODEL cell (verbatim:
max_epochs=1, device 'auto', so CUDA when there is one) through the engine on a temporary
folder, and prints each statement's time. Then times decode + embed (CONVERT's compute, without
the SQL and index writes) of --images JPEGs with the trained model.

    python bench/tutorial_build.py [--images 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thanosql_kernel.engine import Services, execute  # noqa: E402
from thanosql_kernel.settings import Settings  # noqa: E402
from thanosql_kernel.syntax import parse  # noqa: E402

CELLS = [
    "GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)",
    '%%thanosql\nCOPY mnist_train\nOPTIONS(overwrite=True)\n'
    'FROM "tutorial_data/mnist_data/mnist_train.csv"',
    '%%thanosql\nCOPY mnist_test\nOPTIONS(overwrite=True) \n'
    'FROM "tutorial_data/mnist_data/mnist_test.csv"',
    '%%thanosql\nBUILD MODEL my_image_search_model\nUSING SimCLR\nOPTIONS (\n'
    '    image_col="image_path",\n    max_epochs=1,\n    overwrite=True\n    )\nAS \n'
    'SELECT * \nFROM mnist_train',
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ctx = Services.open(Settings.from_env(cwd=folder, env={}))
        print(f"{'statement':<44} {'seconds':>8}")
        for cell in CELLS:
            started = time.perf_counter()
            for node in parse(cell):
                result = execute(node, ctx)
            seconds = time.perf_counter() - started
            first = " ".join(cell.replace("%%thanosql\n", "").split())[:44]
            print(f"{first:<44} {seconds:>8.2f}   {getattr(result, 'text', '')[:70]}")
        from thanosql_kernel.models import embed, iter_image_batches

        model, _ = ctx.loader.load("my_image_search_model")
        source = sorted((folder / "tutorial_data" / "mnist_data" / "train").glob("*.jpg"))
        many = folder / "many"
        many.mkdir()
        paths = []
        for i in range(args.images):  # distinct files (hard links): each is decoded
            os.link(source[i % len(source)], many / f"{i}.jpg")
            paths.append(str(many / f"{i}.jpg"))
        started = time.perf_counter()
        count = 0
        for batch in iter_image_batches(paths, 1024, model.image_size, model.channels):
            count += len(embed(model, batch, batch_size=1024))
        seconds = time.perf_counter() - started
        print(f"decode + embed {count:,} JPEGs on {model.device}: {seconds:.2f} s = "
              f"{count / seconds:,.0f} images/s ({model.embedding_dim}-d)")
        ctx.close()


if __name__ == "__main__":
    main()

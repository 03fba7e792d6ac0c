"""BUILD MODEL, LIST MODEL and DELETE MODEL."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import (
    AlreadyExistsError,
    DataError,
    DiskFullError,
    NotFoundError,
    OptionError,
    excerpt,
)
from ..models import prepare_training
from ..models.config import SIMCLR_OPTIONS, simclr_config
from ..options import OptionSpec, read_options
from ..results import Message, Progress, Table
from ..storage import EmbeddingColumn, Transaction
from ..storage.registry import check_name
from ..syntax import BuildModel, DeleteModel, ListModels, Sql
from ..syntax.statements import statement_for
from .image_rows import ON_ERROR, image_column, image_paths, places, readable
from .run import Run
from .services import Services

if TYPE_CHECKING:
    import torch

    from ..models import ImageFiles, TrainedModel, TrainProgress
    from ..models.config import SimCLRConfig

#: base models BUILD MODEL knows, by lower-case name: (the name users see, its options)
BASE_MODELS: dict[str, tuple[str, tuple[OptionSpec, ...]]] = {
    "simclr": ("SimCLR", SIMCLR_OPTIONS),
}
#: options of BUILD MODEL whatever the base model; the base model's own follow them
BUILD_OPTIONS = (
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("label_col", (str, type(None)), None,
               "a label column, recorded in the model card, never used for training "
               "(default None)"),
    OptionSpec("overwrite", (bool,), False, "True replaces a model of that name (default False)"),
    ON_ERROR,
    OptionSpec("workers", (int, type(None)), None,
               "data-parallel training workers on the Ray cluster that THANOSQL_RAY_ADDRESS "
               "names (default: one per GPU, else one per node)",
               check=lambda v: None if v is None or v >= 1 else "must be at least 1",
               allowed="a whole number of at least 1"),
)


def build_options(base: str) -> tuple[OptionSpec, ...]:
    """Every option of ``BUILD MODEL … USING base``."""
    return BUILD_OPTIONS + BASE_MODELS[base][1]


def build_model(node: BuildModel, services: Services, run: Run) -> Message:
    known = BASE_MODELS.get(node.base.lower())
    if known is None:
        raise NotFoundError(f"There is no base model {excerpt(node.base)}",
                            hint="Known base models: "
                                 f"{', '.join(name for name, _ in BASE_MODELS.values())}.")
    base = known[0]
    options = read_options(node.options, build_options(node.base.lower()), "BUILD MODEL")
    config = simclr_config(options)
    on_cluster = services.cluster.configured and config.max_epochs > 0
    if options["workers"] is not None and options["workers"] > 1 and not on_cluster:
        raise OptionError(f"workers={options['workers']} trains on a Ray cluster, and "
                          + ("max_epochs=0 trains nothing" if services.cluster.configured
                             else "none is configured"),
                          hint="Set THANOSQL_RAY_ADDRESS to the cluster's head (see the "
                               "README), or leave workers out to train in the kernel.")
    check_name(node.name)
    if not options["overwrite"] and services.registry.exists(node.name):
        raise AlreadyExistsError(f"A model named {excerpt(node.name)} already exists",
                                 hint="Add OPTIONS (overwrite=True) to replace it, or choose "
                                      "another name.")
    if config.pretrained:   # missing weights fail now, before a single image is read
        from ..models.pretrained import ensure_weights

        ensure_weights(config.backbone)
    if on_cluster:   # a cluster that cannot be reached fails before any work
        services.cluster.check()
    prepare_training()   # imports behind the reading of the rows and images
    paths, skipped = _training_paths(node, services, run, options)
    started = time.monotonic()
    if on_cluster:
        model, workers = _train_on_cluster(node, services, run, paths, config, started,
                                           options["workers"])
    else:
        model, workers = _train(node, services, run, paths, config, started), 1
    seconds = time.monotonic() - started
    card = {"name": node.name, **model.card_fields(), "trained_on": _trained_on(node),
            "row_count": len(paths), "rows_skipped": skipped, "image_col": options["image_col"],
            "label_col": options["label_col"], "seconds_total": round(seconds, 3),
            "workers": workers, "ray_address": services.cluster.address if on_cluster else None}

    from ..models import save_model

    try:
        services.registry.register(node.name, base_model=base, trained_on=_trained_on(node),
                                   row_count=len(paths), card=card,
                                   write=lambda folder: save_model(model, folder),
                                   overwrite=options["overwrite"])
    except DiskFullError as full:   # the weights, in the cache and in the database
        raise full.needing(2 * model.weight_bytes) from None
    where = (f" on {workers} worker{'s' * (workers != 1)} of the Ray cluster at "
             f"{services.cluster.address}" if on_cluster else "")
    return Message(f"Success: built {node.name} ({base}{_backbone_words(config)}, "
                   f"{_training_words(model, len(paths), seconds)}{where}, "
                   f"{model.embedding_dim}-d embeddings{_precision_words(model)})"
                   f"{_skipped_words(skipped)}")


def _precision_words(model: TrainedModel) -> str:
    if model.precision != "bf16" or model.bf16_cosine is None:
        return ""
    return f", embeds in bf16: cosine with float32 {model.bf16_cosine:.5f} or more"


def _skipped_words(skipped: int) -> str:
    if not skipped:
        return ""
    rows = "1 row" if skipped == 1 else f"{skipped:,} rows"
    return f"; {rows} left out, the image unreadable (on_error='skip')"


def _backbone_words(config: SimCLRConfig) -> str:
    if config.backbone == "small":
        return ""
    return f" on {config.backbone}" + (" from ImageNet weights" if config.pretrained else "")


def _training_words(model: TrainedModel, images: int, seconds: float) -> str:
    epochs = model.config.max_epochs
    if not model.trained:
        return f"not trained (max_epochs=0), ready for {images:,} images in {seconds:.1f} s"
    return (f"{epochs} epoch{'s' * (epochs != 1)} over {images:,} images in {seconds:.1f} s, "
            f"final loss {model.loss_per_epoch[-1]:.4f}")


def _training_paths(node: BuildModel, services: Services, run: Run, options: dict[str, Any]
                    ) -> tuple[list[str], int]:
    """The image files the query names, checked: no row without a path, every image readable
    (or left out, with on_error='skip'), at least two. Also how many were left out."""
    rows = run.rows(node.query)
    statement = f"BUILD MODEL {node.name}"
    index = image_column(rows.columns, options["image_col"], statement)
    if options["label_col"] is not None:
        image_column(rows.columns, options["label_col"], statement)
    values = [r[index] for r in rows.rows]
    where = places(services, node.query)
    paths = image_paths(where, values, options["image_col"], statement)
    kept, skipped = readable(services.settings, where, paths, values, options["on_error"],
                             statement)
    paths = [paths[i] for i in kept] if skipped else paths
    if len(paths) < 2:
        left = f" ({skipped:,} left out: unreadable)" if skipped else ""
        raise DataError(f"{statement}: the query returned {len(paths)} row(s){left}; SimCLR "
                        "needs at least 2 images")
    return paths, skipped


class _TrainingBar:
    """BUILD's progress bar: steps done, with a line per epoch (and every 10 s) to keep."""

    def __init__(self, run: Run, name: str, started: float) -> None:
        self._run = run
        self._key, self.title = f"build-{name}-{started}", f"BUILD MODEL {name}"
        self._started = self._logged = started
        self._done, self._total = 0, 1

    def prepare(self, detail: str, log_line: str | None = None) -> None:
        """What happens before the first step (reading, decoding)."""
        self._run.report(Progress(self._key, self.title, 0, 1, "steps", detail=detail,
                                  log_line=log_line))

    def step(self, p: TrainProgress) -> None:
        self._done = (p.epoch - 1) * p.steps_per_epoch + p.step
        self._total = p.epochs * p.steps_per_epoch
        now = time.monotonic()
        log = None
        if p.step == p.steps_per_epoch or now - self._logged >= 10:
            self._logged = now
            log = (f"epoch {p.epoch}/{p.epochs}  step {p.step}/{p.steps_per_epoch}  "
                   f"loss {p.loss:.4f}  {p.images_per_second:,.0f} images/s  "
                   f"{p.seconds_left:.0f}s left")
        self._run.report(Progress(self._key, self.title, self._done, self._total, "steps",
                                  now - self._started,
                                  detail=f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.4f} · "
                                         f"{p.images_per_second:,.0f} images/s", log_line=log))

    def finish(self, detail: str) -> None:
        self._run.report(Progress(self._key, self.title, self._done, self._total, "steps",
                                  time.monotonic() - self._started, detail=detail,
                                  finished=True))


def _side(config: SimCLRConfig, paths: list[str]) -> int:
    """The side the images train at: the option, else the small backbone's choice for the
    first image, else ImageNet's 224."""
    from ..models import default_side
    from ..models.config import IMAGENET_SIDE

    if config.image_size:
        return config.image_size
    return default_side(paths[0]) if config.backbone == "small" else IMAGENET_SIDE


def _train(node: BuildModel, services: Services, run: Run, paths: list[str],
           config: SimCLRConfig, started: float) -> TrainedModel:
    """Read the images (into memory when they fit) and train, reporting progress."""
    from ..models import cpu_share, fit, training_ready

    bar = _TrainingBar(run, node.name, started)
    side = _side(config, paths)
    # the share measures the CPU from the decoding on, so training starts with its answer
    with cpu_share(services.settings.threads).running() as share:
        images = _training_images(paths, side, bar)
        training_ready()
        model = fit(images, config, bar.step, share)
    bar.finish(f"final loss {model.loss_per_epoch[-1]:.4f}" if model.loss_per_epoch
               else "not trained (max_epochs=0)")
    return model


def _train_on_cluster(node: BuildModel, services: Services, run: Run, paths: list[str],
                      config: SimCLRConfig, started: float, workers: int | None
                      ) -> tuple[TrainedModel, int]:
    """Train on the Ray cluster's workers, reporting their progress; the model and how many
    workers trained it. Each worker decodes the images itself, from the same paths."""
    import random
    import tempfile
    from pathlib import Path

    from ..cluster.workers import unpack_model
    from ..models import load_model, scan_channels

    bar = _TrainingBar(run, node.name, started)
    side = _side(config, paths)
    bar.prepare(f"reading the headers of {len(paths):,} images")
    channels = scan_channels(paths)
    # every worker draws from one seed, so together they train as one process would
    seed = config.seed if config.seed is not None else random.randrange(2**62)
    count, messages = services.cluster.train(paths, side, channels, config, seed, workers)
    bar.prepare(f"starting {count} training worker{'s' * (count != 1)} on the Ray cluster, "
                f"each decoding the {len(paths):,} images at {side}x{side}")
    model: TrainedModel | None = None
    try:
        for message in messages:
            if message[0] == "step":
                bar.step(message[1])
                continue
            with tempfile.TemporaryDirectory(prefix="thanosql-model-") as folder:
                unpack_model(message[1], Path(folder))
                model = load_model(Path(folder))
            model.images_held = message[2]
    finally:
        messages.close()   # a stop or an error ends the run on the cluster
    assert model is not None   # the run's last message is its model
    bar.finish(f"final loss {model.loss_per_epoch[-1]:.4f} on {count} "
               f"worker{'s' * (count != 1)}")
    return model, count


def _training_images(paths: list[str], side: int, bar: _TrainingBar
                     ) -> torch.Tensor | ImageFiles:
    """The training images decoded into memory when they fit, else ``ImageFiles``."""
    from ..models import ImageFiles, fits_in_memory, load_images, scan_channels

    bar.prepare(f"reading the headers of {len(paths):,} images")
    # every file's header: a missing or unreadable file fails now, not hours into training
    channels = scan_channels(paths)
    if fits_in_memory(len(paths), channels, (side, side)):
        bar.prepare(f"decoding {len(paths):,} images at {side}x{side}")
        return load_images(paths, side, channels, what=bar.title, check=False)
    # too many to keep in memory: the same training, each batch read from its files
    bar.prepare(f"{len(paths):,} images at {side}x{side} do not fit in memory: each batch is "
                f"read from its files",
                log_line=f"{bar.title}: {len(paths):,} images at {side}x{side} do not fit in "
                         f"memory, so each batch is read from its files (slower; a smaller "
                         f"image_size keeps them in memory)")
    return ImageFiles(paths, side, channels)


def _trained_on(node: BuildModel) -> str:
    query = node.query
    text = query.text if isinstance(query, Sql) and not query.subqueries else query.to_sql()
    return " ".join(text.split())


def list_models(_: ListModels, services: Services, __: Run) -> Table:
    rows = tuple((e.name, e.base_model, e.trained_on, e.status,
                  e.last_updated_utc and e.last_updated_utc.replace(microsecond=0))
                 for e in services.registry.entries())
    return Table(statement_for(ListModels).columns, rows)


def delete_model(node: DeleteModel, services: Services, _: Run) -> Message:
    """Remove the model and, in the same transaction, the embedding columns it made: without
    the model no query image can be embedded to search them."""
    catalog = services.catalog
    made: list[EmbeddingColumn] = []

    def drop_columns(tx: Transaction) -> None:
        made.extend(e for e in catalog.entries(tx) if e.model == node.name)
        for entry in made:
            catalog.drop(tx, entry)

    deleted = services.registry.delete(node.name, missing_ok=node.if_exists,
                                       with_it=drop_columns)
    services.loader.forget(node.name)
    for entry in made:
        catalog.drop_collection(entry.collection)
    if not deleted:
        return Message(f"Success: there was no model {node.name}")
    columns = ", ".join(f"{e.table_name}.{e.column_name}" for e in made)
    return Message(f"Success: deleted the model {node.name}" +
                   (f" and the embedding column{'s' * (len(made) > 1)} it made: {columns}"
                    if made else ""))

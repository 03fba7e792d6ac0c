"""BUILD MODEL, LIST MODEL and DELETE MODEL, and loading a registered model to embed with."""

from __future__ import annotations

import time
from contextlib import suppress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import AlreadyExistsError, DataError, NotFoundError, ThanoSQLError, excerpt
from ..models.options import SIMCLR_OPTIONS, simclr_config
from ..options import OptionSpec, read_options
from ..results import Message, Progress, Table
from ..storage import EmbeddingColumn, ModelEntry, Transaction
from ..storage.models import check_name
from ..syntax import BuildModel, DeleteModel, ListModels, Sql
from ..syntax.statements import statement_for
from .context import Context
from .queries import image_column, image_paths, rows_of

if TYPE_CHECKING:
    from ..models import TrainedModel
    from ..models.options import SimCLRConfig

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
)


def build_options(base: str) -> tuple[OptionSpec, ...]:
    """Every option of ``BUILD MODEL … USING base``."""
    return BUILD_OPTIONS + BASE_MODELS[base][1]


def load(ctx: Context, name: str) -> tuple[TrainedModel, ModelEntry]:
    """A registered model, ready to embed; loaded again when its content changed (another
    kernel rebuilt it), else kept loaded between statements."""
    from ..models import load_model

    entry = ctx.models.get(name)
    held = ctx.loaded.get(name)
    if held is None or held[0] != entry.digest:
        folder = ctx.models.files(entry)
        try:   # embedding runs on CUDA when there is one, wherever the model was trained
            model = load_model(folder, device="auto")
        except ThanoSQLError:
            raise
        except Exception as e:  # noqa: BLE001 - files that passed their checksum yet do not load
            raise DataError(f"The model {name!r} cannot be loaded: {type(e).__name__}: "
                            f"{str(e)[:200]}",
                            hint=f"Build it again: BUILD MODEL {name} … OPTIONS "
                                 "(overwrite=True).") from None
        ctx.loaded[name] = held = (str(entry.digest), model)
    return held[1], entry


def build_model(node: BuildModel, ctx: Context) -> Message:
    known = BASE_MODELS.get(node.base.lower())
    if known is None:
        raise NotFoundError(f"There is no base model {excerpt(node.base)}",
                            hint="Known base models: "
                                 f"{', '.join(name for name, _ in BASE_MODELS.values())}.")
    base = known[0]
    options = read_options(node.options, build_options(node.base.lower()), "BUILD MODEL")
    config = simclr_config(options)
    check_name(node.name)
    if not options["overwrite"] and ctx.models.exists(node.name):
        raise AlreadyExistsError(f"A model named {excerpt(node.name)} already exists",
                                 hint="Add OPTIONS (overwrite=True) to replace it, or choose "
                                      "another name.")
    if config.pretrained:   # missing weights fail now, before a single image is read
        from ..models.pretrained import ensure_weights

        ensure_weights(config.backbone)
    paths = _training_paths(node, ctx, options["image_col"], options["label_col"])
    started = time.monotonic()
    model = _train(node, ctx, paths, config, started)
    seconds = time.monotonic() - started
    card = {"name": node.name, **model.card_fields(), "trained_on": _trained_on(node),
            "row_count": len(paths), "image_col": options["image_col"],
            "label_col": options["label_col"], "seconds_total": round(seconds, 3)}

    from ..models import save_model

    ctx.models.register(node.name, base_model=base, trained_on=_trained_on(node),
                        row_count=len(paths), card=card,
                        write=lambda folder: save_model(model, folder),
                        overwrite=options["overwrite"])
    return Message(f"Success: built {node.name} ({base}{_backbone_words(config)}, "
                   f"{_training_words(model, len(paths), seconds)}, "
                   f"{model.embedding_dim}-d embeddings)")


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


def _training_paths(node: BuildModel, ctx: Context, image_col: str,
                    label_col: str | None) -> list[str]:
    """The image files the query names, checked: at least two, no row without a path."""
    rows = rows_of(node.query, ctx)
    statement = f"BUILD MODEL {node.name}"
    index = image_column(rows.columns, image_col, statement)
    if label_col is not None:
        image_column(rows.columns, label_col, statement)
    paths = image_paths(ctx, [r[index] for r in rows.rows], image_col, statement)
    if len(paths) < 2:
        raise DataError(f"{statement}: the query returned {len(paths)} row(s); SimCLR needs "
                        "at least 2 images")
    return paths


def _train(node: BuildModel, ctx: Context, paths: list[str], config: SimCLRConfig,
           started: float) -> TrainedModel:
    """Read the images (into memory when they fit) and train, reporting progress."""
    from ..models import default_side, fit
    from ..models.options import IMAGENET_SIDE
    from ..models.threads import cpu_share

    key, title = f"build-{node.name}-{started}", f"BUILD MODEL {node.name}"

    def report(detail: str, log_line: str | None = None) -> None:
        ctx.report(Progress(key, title, 0, 1, "steps", detail=detail, log_line=log_line))

    last_log = [started]
    steps = [0, 1]

    def progress(p: Any) -> None:
        steps[:] = [(p.epoch - 1) * p.steps_per_epoch + p.step, p.epochs * p.steps_per_epoch]
        now = time.monotonic()
        log = None
        if p.step == p.steps_per_epoch or now - last_log[0] >= 10:
            last_log[0] = now
            log = (f"epoch {p.epoch}/{p.epochs}  step {p.step}/{p.steps_per_epoch}  "
                   f"loss {p.loss:.4f}  {p.images_per_second:,.0f} images/s  "
                   f"{p.seconds_left:.0f}s left")
        ctx.report(Progress(key, title, steps[0], steps[1], "steps", now - started,
                            detail=f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.4f} · "
                                   f"{p.images_per_second:,.0f} images/s", log_line=log))

    side = config.image_size or (default_side(paths[0]) if config.backbone == "small"
                                 else IMAGENET_SIDE)
    # the share measures the CPU from the decoding on, so training starts with its answer
    with cpu_share(ctx.settings.threads).running() as share:
        model = fit(_training_images(paths, side, title, report), config, progress, share)
    ctx.report(Progress(key, title, steps[0], steps[1], "steps", time.monotonic() - started,
                        detail=f"final loss {model.loss_per_epoch[-1]:.4f}"
                        if model.loss_per_epoch else "not trained (max_epochs=0)", finished=True))
    return model


def _training_images(paths: list[str], side: int, title: str,
                     report: Callable[..., None]) -> Any:
    """The training images decoded into memory when they fit, else ``ImageFiles``."""
    from ..models import ImageFiles, fits_in_memory, load_images, scan_channels

    report(f"reading the headers of {len(paths):,} images")
    # every file's header: a missing or unreadable file fails now, not hours into training
    channels = scan_channels(paths)
    if fits_in_memory(len(paths), channels, (side, side)):
        report(f"decoding {len(paths):,} images at {side}x{side}")
        images = load_images(paths, side, channels, what=title, check=False)
    else:   # too many to keep in memory: the same training, each batch read from its files
        images = ImageFiles(paths, side, channels)
        report(f"{len(paths):,} images at {side}x{side} do not fit in memory: each batch is "
               f"read from its files",
               log_line=f"{title}: {len(paths):,} images at {side}x{side} do not fit in "
                        f"memory, so each batch is read from its files (slower; a smaller "
                        f"image_size keeps them in memory)")
    return images


def _trained_on(node: BuildModel) -> str:
    query = node.query
    text = query.text if isinstance(query, Sql) and not query.subqueries else query.to_sql()
    return " ".join(text.split())


def list_models(_: ListModels, ctx: Context) -> Table:
    rows = tuple((e.name, e.base_model, e.trained_on, e.status,
                  e.last_updated_utc.replace(microsecond=0)) for e in ctx.models.entries())
    return Table(statement_for(ListModels).columns, rows)


def delete_model(node: DeleteModel, ctx: Context) -> Message:
    """Remove the model and, in the same transaction, the embedding columns it made: without
    the model no query image can be embedded to search them."""
    made: list[EmbeddingColumn] = []

    def drop_columns(tx: Transaction) -> None:
        made.extend(e for e in ctx.embeddings.all(tx) if e.model == node.name)
        for entry in made:
            ctx.embeddings.drop(tx, entry)

    deleted = ctx.models.delete(node.name, missing_ok=node.if_exists, with_it=drop_columns)
    ctx.loaded.pop(node.name, None)
    for entry in made:
        with suppress(ThanoSQLError):   # an index nobody names any more is only space
            ctx.vectors.drop(entry.collection)
    if not deleted:
        return Message(f"Success: there was no model {node.name}")
    columns = ", ".join(f"{e.table_name}.{e.column_name}" for e in made)
    return Message(f"Success: deleted the model {node.name}" +
                   (f" and the embedding column{'s' * (len(made) > 1)} it made: {columns}"
                    if made else ""))

"""BUILD MODEL, LIST MODEL and DELETE MODEL: training and the model registry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import AlreadyExistsError, DataError, NotFoundError
from ..results import Message, Progress, Table
from ..storage.catalog import ModelCatalog
from ..syntax import BuildModel, DeleteModel, ListModels, Options, Sql
from .context import Context
from .options import OptionSpec, read_options
from .queries import rows_of

if TYPE_CHECKING:
    from ..models import TrainedModel

#: base models BUILD MODEL knows, by lower-case name, as shown to users
BASE_MODELS = {"simclr": "SimCLR"}
#: options of BUILD MODEL handled here; the rest belong to the base model's trainer
COMMON_OPTIONS = (
    OptionSpec("image_col", (str,), "image_path", "the column of image paths"),
    OptionSpec("label_col", (str, type(None)), None, "recorded, never used for training"),
    OptionSpec("overwrite", (bool,), False, "True replaces a model of that name"),
)


def catalog(ctx: Context) -> ModelCatalog:
    found = ctx.ports.get("catalog")
    if found is None:
        found = ctx.ports["catalog"] = ModelCatalog(ctx.store, ctx.settings.workspace)
    assert isinstance(found, ModelCatalog)
    return found


def load(ctx: Context, name: str) -> tuple[TrainedModel, Any]:
    """A registered model, ready to embed (kept loaded while its catalog row is unchanged)."""
    from ..models import load_model

    entry = catalog(ctx).get(name)
    cache: dict[str, tuple[Any, Any]] = ctx.ports.setdefault("loaded", {})  # type: ignore
    key = (entry.last_updated_utc, str(entry.folder))
    if name not in cache or cache[name][0] != key:
        # embedding runs on CUDA when there is one, wherever the model was trained
        cache[name] = (key, load_model(entry.folder, device="auto"))
    return cache[name][1], entry


def image_column(columns: tuple[str, ...], wanted: str, statement: str) -> int:
    """The index of the image column, or a NotFoundError that lists the columns there are."""
    lowered = [c.lower() for c in columns]
    if wanted.lower() not in lowered:
        raise NotFoundError(
            f"{statement}: the query has no column {wanted!r}",
            hint=f"Its columns are {', '.join(columns)}. Name the column that holds image "
                 f"paths with OPTIONS (image_col='…').")
    return lowered.index(wanted.lower())


def image_paths(ctx: Context, values: list[Any], column: str, statement: str) -> list[str]:
    """The rows' image paths, resolved against the kernel's folder; NULLs are an error."""
    paths: list[str] = []
    for i, value in enumerate(values):
        if value is None or not str(value).strip():
            raise DataError(f"{statement}: row {i + 1} has no image path in {column!r}",
                            hint="Filter such rows out in the query (WHERE "
                                 f"{column} IS NOT NULL).")
        paths.append(str(ctx.settings.resolve(str(value))))
    return paths


def build_model(node: BuildModel, ctx: Context) -> Message:
    base = BASE_MODELS.get(node.base.lower())
    if base is None:
        raise NotFoundError(f"There is no base model {node.base!r}",
                            hint=f"Known base models: {', '.join(BASE_MODELS.values())}.")
    common = {spec.name for spec in COMMON_OPTIONS}
    mine = Options(tuple(item for item in node.options.items if item[0] in common))
    options = read_options(mine, COMMON_OPTIONS, "BUILD MODEL")
    image_col, label_col, overwrite = (options["image_col"], options["label_col"],
                                       options["overwrite"])
    from ..models.options import parse_simclr_options

    config = parse_simclr_options({k: v for k, v in node.options.items if k not in common})
    models = catalog(ctx)
    models.folder(node.name)
    if not overwrite and models.exists(node.name):
        raise AlreadyExistsError(f"A model named {node.name!r} already exists",
                          hint="Add OPTIONS (overwrite=True) to replace it, or choose another "
                               "name.")
    rows = rows_of(node.query, ctx)
    statement = f"BUILD MODEL {node.name}"
    index = image_column(rows.columns, image_col, statement)
    if label_col is not None:
        image_column(rows.columns, label_col, statement)
    paths = image_paths(ctx, [r[index] for r in rows.rows], image_col, statement)
    if len(paths) < 2:
        raise DataError(f"{statement}: the query returned {len(paths)} row(s); SimCLR needs "
                        "at least 2 images")

    from ..models import fit, load_images, save_model
    from ..models.images import ImageFiles, default_side, fits_in_memory, scan_channels

    started = time.monotonic()
    key = f"build-{node.name}-{started}"
    side = config.image_size or default_side(paths[0])
    ctx.report(Progress(key, f"BUILD MODEL {node.name}", 0, 1, "steps",
                        detail=f"reading the headers of {len(paths):,} images"))
    # every file's header: a missing or unreadable file fails now, not hours into training
    channels = scan_channels(paths)
    images: Any
    if fits_in_memory(len(paths), channels, (side, side)):
        ctx.report(Progress(key, f"BUILD MODEL {node.name}", 0, 1, "steps",
                            detail=f"decoding {len(paths):,} images at {side}x{side}"))
        images = load_images(paths, side, channels, what=statement, check=False)
    else:   # too many to keep in memory: the same training, each batch read from its files
        images = ImageFiles(paths, side, channels)
        ctx.report(Progress(key, f"BUILD MODEL {node.name}", 0, 1, "steps",
                            detail=f"{len(paths):,} images at {side}x{side} do not fit in "
                                   f"memory: each batch is read from its files",
                            log_line=f"BUILD MODEL {node.name}: {len(paths):,} images at "
                                     f"{side}x{side} do not fit in memory, so each batch is "
                                     f"read from its files (slower; a smaller image_size "
                                     f"keeps them in memory)"))
    last_log = [started]
    steps = [0, 1]

    def progress(p: Any) -> None:
        done = (p.epoch - 1) * p.steps_per_epoch + p.step
        total = p.epochs * p.steps_per_epoch
        steps[:] = [done, total]
        now = time.monotonic()
        epoch_end = p.step == p.steps_per_epoch
        log = None
        if epoch_end or now - last_log[0] >= 10:
            last_log[0] = now
            log = (f"epoch {p.epoch}/{p.epochs}  step {p.step}/{p.steps_per_epoch}  "
                   f"loss {p.loss:.4f}  {p.images_per_second:,.0f} images/s  "
                   f"{p.seconds_left:.0f}s left")
        ctx.report(Progress(key, f"BUILD MODEL {node.name}", done, total, "steps",
                            now - started,
                            detail=f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.4f} · "
                                   f"{p.images_per_second:,.0f} images/s",
                            log_line=log))

    model = fit(images, config, progress)
    seconds = time.monotonic() - started
    card = {"name": node.name, **model.card_fields(), "trained_on": _trained_on(node),
            "row_count": len(paths), "image_col": image_col, "label_col": label_col,
            "seconds_total": round(seconds, 3)}
    models.register(node.name, base_model=base, trained_on=_trained_on(node), row_count=len(paths),
                    card=card, write=lambda folder: save_model(model, folder),
                    overwrite=overwrite)
    ctx.ports.get("loaded", {}).pop(node.name, None)  # type: ignore[union-attr]
    ctx.report(Progress(key, f"BUILD MODEL {node.name}", steps[0], steps[1], "steps", seconds,
                        detail=f"final loss {model.loss_per_epoch[-1]:.4f}", finished=True))
    epochs = config.max_epochs
    return Message(f"Success: built {node.name} ({base}, {epochs} epoch{'s' * (epochs != 1)} "
                   f"over {len(paths):,} images in {seconds:.1f} s, final loss "
                   f"{model.loss_per_epoch[-1]:.4f}, {model.embedding_dim}-d embeddings)")


def _trained_on(node: BuildModel) -> str:
    query = node.query
    text = query.text if isinstance(query, Sql) and not query.subqueries else query.to_sql()
    return " ".join(text.split())


def list_models(_: ListModels, ctx: Context) -> Table:
    rows = tuple((e.name, e.base_model, e.trained_on, e.status, e.last_updated_utc)
                 for e in catalog(ctx).entries())
    return Table(("name", "base_model", "trained_on", "status", "last_updated_utc"), rows)


def delete_model(node: DeleteModel, ctx: Context) -> Message:
    deleted = catalog(ctx).delete(node.name, missing_ok=node.if_exists)
    ctx.ports.get("loaded", {}).pop(node.name, None)  # type: ignore[union-attr]
    return Message(f"Success: deleted the model {node.name}" if deleted else
                   f"Success: there was no model {node.name}")

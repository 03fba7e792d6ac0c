"""The model loader: registered models ready to embed with, kept loaded between statements."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DataError, ThanoSQLError
from ..storage import ModelEntry, ModelRegistry

if TYPE_CHECKING:
    from ..models import TrainedModel


class ModelLoader:
    """Loads a model from the registry's files once, and again only when its content changed
    (another kernel rebuilt it): the cache is keyed by the content digest."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        #: model name -> (the content digest it was loaded from, the model)
        self._loaded: dict[str, tuple[str | None, TrainedModel]] = {}

    def load(self, name: str) -> tuple[TrainedModel, ModelEntry]:
        """The model ``name``, ready to embed, and its catalog row."""
        from ..models import load_model

        entry = self._registry.get(name)
        held = self._loaded.get(name)
        if held is None or held[0] != entry.digest:
            folder = self._registry.files(entry)
            try:   # embedding runs on CUDA when there is one, wherever the model was trained
                model = load_model(folder, device="auto")
            except ThanoSQLError:
                raise
            except Exception as e:  # noqa: BLE001 - files that passed their checksum yet do not load
                raise DataError(f"The model {name!r} cannot be loaded: {_load_problem(e)}",
                                hint=f"Build it again: BUILD MODEL {name} … OPTIONS "
                                     "(overwrite=True).") from None
            self._loaded[name] = held = (entry.digest, model)
        return held[1], entry

    def forget(self, name: str | None = None) -> None:
        """Unload ``name`` (a deleted model), or every model."""
        if name is None:
            self._loaded.clear()
        else:
            self._loaded.pop(name, None)


def _load_problem(error: BaseException) -> str:
    """One line on why the model's files do not load (torch's own words run to a page)."""
    text = str(error).strip()
    if "weights only load failed" in text.lower() or type(error).__name__ == "UnpicklingError":
        return ("its weights file holds pickled Python objects, which the kernel never loads "
                "(it reads tensors only, torch.load(weights_only=True))")
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first[:160]}"

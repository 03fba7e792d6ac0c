"""The model loader: registered models ready to embed with, kept loaded between statements."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ..errors import DataError, ThanoSQLError
from ..storage import ModelEntry, ModelRegistry

if TYPE_CHECKING:
    import numpy as np

    from ..models import TrainedModel

#: query embeddings remembered (each a few hundred bytes to a few KB)
_QUERIES_KEPT = 256


class ModelLoader:
    """Loads a model from the registry's files once, and again only when its content changed
    (another kernel rebuilt it): the cache is keyed by the content digest."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        #: model name -> (the content digest it was loaded from, the model)
        self._loaded: dict[str, tuple[str | None, TrainedModel]] = {}
        #: the embeddings of query images SEARCH embedded lately, by the model's digest and
        #: the file's identity, most recent last: a notebook searches the same image again
        #: and again, and embedding it is a fifth of a search of 100,000 rows
        self._queries: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()

    def query_embedding(self, key: tuple[object, ...]) -> np.ndarray | None:
        """The embedding remembered under ``key`` (see ``remember_query``), or None."""
        found = self._queries.get(key)
        if found is not None:
            self._queries.move_to_end(key)
        return found

    def remember_query(self, key: tuple[object, ...], embedding: np.ndarray) -> None:
        """Remember a query image's embedding under (model digest, the file's device, inode,
        size and modification time in ns): a file changed in any way has another key."""
        self._queries[key] = embedding
        while len(self._queries) > _QUERIES_KEPT:
            self._queries.popitem(last=False)

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
            self._queries.clear()
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

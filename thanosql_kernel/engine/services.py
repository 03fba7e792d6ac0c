"""The services every handler works with, opened once per front end: the SQL store, the model
registry, the embedding catalog and the model loader, with the settings they were opened by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..cluster import Cluster
from ..cluster.shards import SearchShards
from ..settings import Settings
from ..storage import ModelRegistry, SqlStore, TableFolders
from .catalog import EmbeddingCatalog
from .loader import ModelLoader


def _unheard(_: str) -> None:
    """The notice sink of services nobody watches."""


@dataclass(frozen=True)
class Services:
    """``store`` runs SQL and owns the tables, ``registry`` the models and their files,
    ``catalog`` the embedding columns with their vector index, ``loader`` the models loaded
    to embed with, ``folders`` where each table's images are; ``notify`` says in one line
    what the kernel put right by itself (a damaged index rebuilt). Each keeps its own caches;
    none changes from cell to cell."""

    settings: Settings
    store: SqlStore
    registry: ModelRegistry
    catalog: EmbeddingCatalog
    loader: ModelLoader
    #: the Ray cluster CONVERT and BUILD run on (``configured`` False: none, all in the kernel)
    cluster: Cluster
    #: the folders each table's relative image paths are relative to
    folders: TableFolders
    notify: Callable[[str], None] = _unheard

    @classmethod
    def open(cls, settings: Settings, notify: Callable[[str], None] = _unheard) -> Services:
        """The services of ``settings``; nothing is connected until first used."""
        store = SqlStore(settings.database_url)
        registry = ModelRegistry(store, settings.workspace, notify)
        cluster = Cluster(settings.ray_address)
        shards = SearchShards(cluster, settings.database_url, settings.search_shard_rows)
        return cls(settings, store, registry, EmbeddingCatalog(store, settings, notify, shards),
                   ModelLoader(registry), cluster, TableFolders(store), notify)

    def close(self) -> None:
        """Release the vector index, if one was opened, and the database."""
        self.catalog.close()
        self.cluster.close()
        self.store.dispose()

"""The embedding catalog: the columns CONVERT made, together with the vector index and the
compact in-memory copies kept in step with them.

The table column is the truth. The vector index (Chroma) and the compact copy held in memory
for exact search are copies of it that ``publish`` makes and ``repair`` can always make again; a
search asks them only for candidates (``candidates``), and the column's own vectors score
those (``vectors.cosine_scores``), so every path shows the same numbers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DamagedIndex, ThanoSQLError
from ..results import Table
from ..settings import Settings
from ..storage import EmbeddingColumn, EmbeddingColumns, SqlStore, Transaction, reshapes

if TYPE_CHECKING:
    import numpy as np

    from ..cluster.shards import SearchShards
    from ..vectors import CompactVectors, StoredCopies, VectorIndex

#: a nearest-neighbour answer may be short when rows changed since CONVERT; ask for a margin
_INDEX_MARGIN = 2
#: rows read from the column at a time into the compact copy (about 30 MB of Python objects)
_LOAD_CHUNK = 50_000
#: rows of a stored compact copy checked against the column before it is used
_SPOT_CHECKS = 64


def _encoded(paths: list[str]) -> np.ndarray:
    """Image paths as the compact copy keeps them: fixed-width bytes, a row each."""
    import numpy as np

    return np.array([p.encode() for p in paths], dtype=bytes)


class EmbeddingCatalog:
    """Which columns hold embeddings, from which model, and the copies that search them.

    The vector index opens on first use, so plain SQL never loads Chroma, and again after a
    failed open (a server that was down). One converted column's compact copy is kept in
    memory at a time. With ``shards`` (a Ray cluster), a column of more rows than a shard
    holds is searched by shards on the cluster instead.
    """

    def __init__(self, store: SqlStore, settings: Settings,
                 notify: Callable[[str], None], shards: SearchShards | None = None) -> None:
        self.store = store
        self.settings = settings
        self._notify = notify
        self._shards = shards
        self._columns = EmbeddingColumns(store)
        self._index: VectorIndex | None = None
        #: the embedded index was found damaged: set it aside and rebuild it on next use
        self._damaged = False
        #: one converted column's compact copy for exact search: collection -> (paths, copy)
        self._compacts: dict[str, tuple[np.ndarray, CompactVectors]] = {}

    # -- what the catalog records ------------------------------------------------------------
    def entries(self, tx: Transaction) -> list[EmbeddingColumn]:
        """Every embedding column (none before the first CONVERT made the catalog)."""
        return self._columns.all(tx)

    def entry(self, tx: Transaction, table: str, column: str) -> EmbeddingColumn | None:
        return self._columns.get(tx, table, column)

    def names(self, tx: Transaction) -> set[str]:
        """The names of every embedding column, in any table."""
        return self._columns.names(tx)

    def covers(self, tx: Transaction, entry: EmbeddingColumn) -> bool:
        """Whether every row of the table had a vector at the last CONVERT and still has one."""
        return self._columns.covers(tx, entry)

    def rows_at(self, tx: Transaction, entry: EmbeddingColumn, paths: list[str]) -> Table:
        """Every row of the entry's table whose image path is one of ``paths``, all columns."""
        return self._columns.rows_at(tx, entry.table_name, entry.image_col, paths)

    # -- writing a column --------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the catalog's table once, in a transaction of its own: call it before the
        transaction that writes a column."""
        self._columns.ensure()

    def prepare(self, tx: Transaction, table: str, column: str, image_col: str) -> None:
        """Add the column to ``table`` if it is missing, and the indexes CONVERT and SEARCH
        rely on."""
        self._columns.prepare(tx, table, column, image_col)

    def write(self, tx: Transaction, table: str, column: str, image_col: str,
              vectors: list[tuple[str, bytes]]) -> None:
        """Set ``column`` to each vector in the rows whose image path is the one given."""
        self._columns.write(tx, table, column, image_col, vectors)

    def publish(self, tx: Transaction, entry: EmbeddingColumn) -> EmbeddingColumn:
        """Fill ``entry.collection`` from the column (the truth) and record it in the catalog.

        Rows are keyed by image path (the embedding is a function of the image); ``row_count``
        is the table's size when every row has an embedding, else -1, so SEARCH can tell
        whether the index still covers the table.
        """
        from ..vectors import CompactVectors, blobs_to_matrix

        ids, blobs, rows = self._columns.vectors(tx, entry)
        matrix = blobs_to_matrix(blobs, entry.dim)
        self.index.replace(entry.collection, ids, matrix)
        total = self.store.count_rows(tx, entry.table_name)
        entry = replace(entry, row_count=total if rows == total else -1)
        self._columns.put(tx, entry)
        if len(ids) == entry.row_count and self._searched_here(entry):
            # every row a path of its own: the vectors are the compact copy's rows, so the
            # first search (in this kernel or another) reads the copy's file, not the column;
            # the old collection's file goes with it once CONVERT commits (drop_collection)
            self._stored_copies().save(
                entry.table_name, entry.column_name, entry.collection,
                _encoded(ids), CompactVectors.from_matrix(matrix), replacing=False)
        return entry

    def _searched_here(self, entry: EmbeddingColumn) -> bool:
        """Whether the kernel's own compact copy answers the column's exact searches (not
        the vector index past the exact limit, nor shards on a cluster)."""
        return entry.row_count <= self.settings.exact_search_max_rows and not (
            self._shards is not None and self._shards.applies(entry))

    def drop(self, tx: Transaction, entry: EmbeddingColumn) -> None:
        """Remove the column from its table and from the catalog; its collection goes with
        ``drop_collection`` once the transaction has committed."""
        self._columns.drop(tx, entry)

    def drop_collection(self, collection: str) -> None:
        """Remove a collection nobody names any more; failing to is only space lost, never an
        error of the statement that asked."""
        self._compacts.pop(collection, None)
        self._stored_copies().drop(collection)
        if self._shards is not None:
            self._shards.drop(collection)
        with suppress(ThanoSQLError):
            self.index.drop(collection)

    @contextmanager
    def following(self, tx: Transaction, sql: str, gone: list[str]) -> Iterator[None]:
        """Around a user's SQL statement that may drop or rename tables and columns: the
        kernel's indexes step aside (SQLite will not drop a column an index names), then the
        catalog follows what the statement did. Entries whose table, column or image column
        is gone are forgotten, their collections added to ``gone`` (to drop once the
        transaction has committed); the others get their indexes back. A statement that fails
        rolls all of it back with its transaction."""
        if not reshapes(sql):
            yield
            return
        entries = self.entries(tx)
        self._columns.release_indexes(tx, entries)
        yield
        for entry in entries:
            kept = self.store.has_table(tx, entry.table_name) and {
                entry.column_name, entry.image_col} <= set(self.store.columns(tx, entry.table_name))
            if kept:
                self._columns.prepare(tx, entry.table_name, entry.column_name, entry.image_col)
            else:
                self._columns.forget(tx, entry)
                gone.append(entry.collection)

    # -- searching ---------------------------------------------------------------------------
    def candidates(self, tx: Transaction, entry: EmbeddingColumn, vector: np.ndarray,
                   k: int, loading: Callable[[int, int, bool], None] | None = None) -> list[str]:
        """The image paths whose rows may be the k most like ``vector``.

        Up to ``exact_search_max_rows`` rows, the exact scan of the column's compact copy
        held in memory (``vectors.CompactVectors``), which returns every path that can be in
        the exact top k; with a cluster and more rows than a shard holds, the same from every
        shard on the cluster (``cluster.shards``); else the vector index's approximate
        nearest neighbours (HNSW), with a margin. ``loading(done, total, finished)`` hears
        how the copy's first load goes.
        """
        shards = self._shards
        if shards is not None and shards.applies(entry):
            live = {e.collection for e in self.entries(tx)}
            return shards.candidates(
                entry, lambda: self._columns.ranges(tx, entry, shards.count(entry)),
                vector, k, live, loading)
        if entry.row_count <= self.settings.exact_search_max_rows:
            paths, compact = self._compact(tx, entry, loading)
            return [paths[i].decode() for i in compact.candidates(vector, k)]
        return [path for path, _ in self.index.query(entry.collection, vector,
                                                     k * _INDEX_MARGIN)]

    def best_first(self, tx: Transaction, entry: EmbeddingColumn, vector: np.ndarray,
                   first: int, growth: int, most: int,
                   loading: Callable[[int, int, bool], None] | None = None
                   ) -> Generator[tuple[list[str] | None, float], int | None, None] | None:
        """The column's image paths best first by the compact copy's scan, a round at a time,
        each with a bound no later row can beat (``CompactVectors.best_first``, whose next
        round's size may be sent); the last round's paths are None where more than ``most``
        rows are left for it (the caller then has the database answer for every row; a
        million paths cost 0.2 s to make). None beyond ``exact_search_max_rows`` rows and for
        a column searched by shards."""
        import numpy as np

        if not self._searched_here(entry):
            return None
        paths, compact = self._compact(tx, entry, loading)

        def rounds() -> Generator[tuple[list[str] | None, float], int | None, None]:
            found = compact.best_first(vector, first, growth, most)
            asked: int | None = None
            while True:
                try:
                    rows, bound = found.send(asked)
                except StopIteration:
                    return
                asked = yield (None if bound == -np.inf and len(rows) > most
                               else [p.decode() for p in paths[rows]], bound)

        return rounds()

    def _compact(self, tx: Transaction, entry: EmbeddingColumn,
                 loading: Callable[[int, int, bool], None] | None
                 ) -> tuple[np.ndarray, CompactVectors]:
        """The column's image paths (bytes, a row each) and compact copy, made once per
        collection (CONVERT makes a new collection name each time, so a stale copy is never
        used): from its file in the workspace where one was written and still matches the
        column (``vectors.StoredCopies``, a quarter of the column's bytes), else from the
        column chunk by chunk (memory holds the copy and one chunk, never the column), and
        then written to that file for the next kernel."""
        import numpy as np

        from ..vectors import CompactVectors, blobs_to_matrix

        if entry.collection in self._compacts:
            return self._compacts[entry.collection]
        self._compacts.clear()   # one converted column at a time is kept in memory
        at_most = max(entry.row_count, 0)
        stored = self._stored_copies()
        found = stored.load(entry.table_name, entry.column_name, entry.collection, at_most,
                            entry.dim, loading)
        if found is not None and self._still_matches(tx, entry, *found):
            if loading is not None:
                loading(at_most, at_most, True)
            self._compacts[entry.collection] = found
            return found
        paths: list[np.ndarray] = []

        def chunks() -> Iterator[np.ndarray]:
            done = 0
            for chunk_paths, blobs in self._columns.vector_chunks(tx, entry, _LOAD_CHUNK):
                paths.append(_encoded(chunk_paths))
                yield blobs_to_matrix(blobs, entry.dim)
                done += len(blobs)
                if loading is not None:
                    loading(done, at_most, False)
            if loading is not None:
                loading(done, done, True)

        compact = CompactVectors.from_chunks(chunks(), at_most, entry.dim)
        every = np.concatenate(paths) if paths else np.empty(0, dtype=bytes)
        self._compacts[entry.collection] = (every, compact)
        if compact.count == at_most:   # a file read only when the counts agree
            stored.save(entry.table_name, entry.column_name, entry.collection, every, compact)
        return every, compact

    def _stored_copies(self) -> StoredCopies:
        from ..vectors import StoredCopies

        return StoredCopies(self.settings.workspace / "cache" / "search",
                            self.settings.database_url)

    def _still_matches(self, tx: Transaction, entry: EmbeddingColumn, paths: np.ndarray,
                       compact: CompactVectors) -> bool:
        """Whether rows spread over the stored copy are still in the table with the vectors
        it was made from (each within its bound): a check of ``_SPOT_CHECKS`` rows, which
        catches a column written since by other means than CONVERT (which makes a new
        collection) unless it changed only a few rows; the row count and the rows without a
        vector were checked before (``covers``)."""
        import numpy as np

        from ..vectors import blobs_to_matrix, normalize

        n = compact.count
        if n == 0:
            return True
        at = np.unique(np.linspace(0, n - 1, min(n, _SPOT_CHECKS)).round().astype(np.intp))
        wanted = [bytes(p).decode() for p in paths[at]]
        fetched = self.rows_at(tx, entry, list(dict.fromkeys(wanted)))
        columns = [c.lower() for c in fetched.columns]
        if entry.image_col not in columns or entry.column_name not in columns:
            return False
        i_img, i_emb = columns.index(entry.image_col), columns.index(entry.column_name)
        width = entry.dim * 4
        vectors: dict[str, list[bytes]] = {}
        for row in fetched.rows:
            blob = row[i_emb]
            if isinstance(blob, (bytes, memoryview)) and len(blob) == width:
                vectors.setdefault(str(row[i_img]), []).append(bytes(blob))
        codes = compact.codes[:, :entry.dim]
        for i, path in zip(at, wanted, strict=True):
            if path not in vectors:
                return False
            kept = compact.scales[i].float().item() * codes[i].double().numpy()
            units = normalize(blobs_to_matrix(vectors[path], entry.dim)).astype(np.float64)
            lost = np.linalg.norm(units - kept[None, :], axis=1)
            if not (lost <= float(compact.errors[i]) * (1 + 1e-3) + 1e-6).any():
                return False
        return True

    # -- the vector index --------------------------------------------------------------------
    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            from ..vectors import ChromaIndex

            url = self.settings.chroma_url
            if url:
                self._index = ChromaIndex.http(url)
            else:
                folder = self.settings.workspace / "chroma"
                try:
                    if self._damaged:
                        raise DamagedIndex(folder, RuntimeError("found damaged before"))
                    self._index = ChromaIndex(folder)
                except DamagedIndex:
                    self._index = self._repaired(folder)
        return self._index

    def damaged(self) -> None:
        """Drop the open embedded index, whose files cannot be read: the next use sets its
        folder aside and rebuilds it from the embedding columns."""
        if self._index is not None:
            with suppress(Exception):
                self._index.close()
        self._index = None
        self._damaged = not self.settings.chroma_url

    def reset(self) -> None:
        """Drop the open index and the matrices after a full disk, without taking the index
        for damaged: Chroma's client may not recover from a write that failed so, and the
        next use opens it again, once there is space."""
        from ..vectors.chroma import forget_client

        self._compacts.clear()
        if self._index is not None:
            with suppress(Exception):
                self._index.close()
        self._index = None
        if not self.settings.chroma_url:
            forget_client(self.settings.workspace / "chroma")

    def _repaired(self, folder: Path) -> VectorIndex:
        """A new embedded index in ``folder``, holding every embedding column's vectors again;
        the damaged folder is kept aside for whoever wants to look at it."""
        from ..vectors.chroma import ChromaIndex, forget_client

        aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-"
                                 f"{uuid.uuid4().hex[:6]}")
        forget_client(folder)
        folder.rename(aside)
        self._index = ChromaIndex(folder)
        self._damaged = False
        with self.store.begin() as tx:
            made = self.entries(tx)
        rebuilt = 0
        for entry in made:   # each in its own transaction: a table dropped since is skipped
            with suppress(ThanoSQLError), self.store.begin(write=True) as tx:
                self.publish(tx, entry)
                rebuilt += 1
        self._notify(f"The vector index in {folder} was damaged: it was set aside as "
                     f"{aside.name} and rebuilt from {rebuilt} embedding column"
                     f"{'s' * (rebuilt != 1)}.")
        return self._index

    def close(self) -> None:
        """Release the vector index, if one was opened, and the matrices."""
        self._compacts.clear()
        if self._index is not None:
            self._index.close()
            self._index = None

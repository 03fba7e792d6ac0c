"""SEARCH IMAGE: each row's cosine similarity to query images, from the converted column's
vectors when they cover the table, else row by row.

Every similarity shown is ``vectors.cosine_scores`` of the row's own vector (from its
embedding column, or computed from its image) and the query's: the in-memory scan and the
vector index only choose which rows to score. So a row shows the same value whichever path
found it.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from ..errors import DataError, NotFoundError, OptionError, excerpt
from ..options import OptionSpec, read_options
from ..paths import not_a_file
from ..results import Progress, Table
from ..storage import EmbeddingColumn
from ..syntax import SearchImage, Sql
from .embedding_rows import check_made_by, refuse_others, row_embeddings
from .image_rows import places
from .naming import embedding_column, similarity_columns
from .run import Run, TopN
from .services import Services

if TYPE_CHECKING:
    from collections.abc import Generator

    import numpy as np

SEARCH_OPTIONS = (
    OptionSpec("search_by", (str,), "image", "what search_input is (default 'image')",
               choices=("image",)),
    OptionSpec("search_input", (str, tuple, type(None)), None,
               "the query image path(s) (default None: use images=)"),
    OptionSpec("emb_col", (str, type(None)), None,
               "the embedding column (default <model>_simclr)"),
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("result_col", (str, type(None)), None,
               "the similarity column (default 'search_result' with search_input)"),
    OptionSpec("top_k", (int, type(None)), 1000,
               "rows returned, best first (default 1000; None: all)",
               check=lambda v: None if v is None or v >= 1 else "must be 1 or more"),
)


def search_image(node: SearchImage, services: Services, run: Run,
                 hint: TopN | None = None) -> Table:
    """Every row with its cosine similarity to each query image (or the top_k, sorted).

    ``hint`` (similarity column, n) comes from an outer ``ORDER BY column DESC LIMIT n``:
    then only rows that can be in that top n are returned.
    """
    import numpy as np

    from ..vectors import cosine_scores

    model, entry = services.loader.load(node.model)
    options = read_options(node.options, SEARCH_OPTIONS, "SEARCH IMAGE")
    second, queries, names = _query_images(node, options, entry.base_model)
    emb_col = (options["emb_col"] or embedding_column(node.model, entry.base_model)).lower()
    image_col = options["image_col"].lower()
    q = _embed_queries(services, node, model, entry.digest, queries)
    limit = options["top_k"] if second else None
    if hint is not None and hint[0] == names[0]:
        limit = hint[1] if limit is None else min(limit, hint[1])
    if limit is not None and len(queries) == 1:
        fast = _search_with_index(services, run, node, emb_col, image_col, names, q[0],
                                  limit, entry.digest)
        if fast is not None:
            return fast
    rows = run.rows(node.query)
    columns = [c.lower() for c in rows.columns]
    if emb_col in columns:   # the rows bring vectors: they must be this model's
        check_made_by(services, "SEARCH IMAGE", node.model, node.query, emb_col, entry.digest)
    matrix, unreadable = row_embeddings(services, "SEARCH IMAGE", model, node.model, node.query,
                                        rows, emb_col, image_col)
    sims = np.stack([cosine_scores(matrix, v) for v in q], axis=1) if len(rows.rows) \
        else np.zeros((0, len(q)))
    # rows CONVERT left out (on_error='skip') have no similarity: SEARCH leaves them out
    left_out = set(unreadable)
    order = [i for i in range(len(rows.rows)) if i not in left_out]
    if second or limit is not None:
        ranked = _ranked(sims[:, 0], None if limit is None else limit + len(left_out))
        order = [int(i) for i in ranked if int(i) not in left_out][:limit]
    if not second:  # the first generation keeps the query's order among the rows it keeps
        order.sort()
    out = tuple(tuple(rows.rows[i]) + tuple(float(s) for s in sims[i]) for i in order)
    vectors = frozenset({emb_col}) if emb_col in columns else frozenset()
    return Table(tuple(rows.columns) + tuple(names), out, vector_columns=vectors)


def _embed_queries(services: Services, node: SearchImage, model: Any, digest: str | None,
                   queries: list[str]) -> np.ndarray:
    """The query images' embeddings (Q, D); each must be a readable file, each embedding a
    vector of numbers. An image searched before with the same model, its file unchanged,
    keeps the embedding it had (``ModelLoader.query_embedding``)."""
    import numpy as np

    from ..models import cpu_share, embed, load_images

    # a path the user typed is looked for in the notebook's folder first, then where the
    # query's tables were loaded from (the tutorial's test image, in a folder shared by two):
    # those are read only when the notebook's folder lacks one, off the usual search's path
    paths = [services.settings.resolved(q) for q in queries]
    found = None
    if not all(os.path.lexists(path) for path in paths):
        found = places(services, node.query, own_first=True)
        paths = [found.resolve(q) for q in queries]
    keys = []
    for shown, path in zip(queries, paths, strict=True):
        if not os.path.lexists(path) and "\0" not in path:
            looked = " and ".join(excerpt(path) for path in dict.fromkeys(
                os.path.join(folder, shown) for folder in found.folders)) \
                if found is not None and not os.path.isabs(os.path.expanduser(shown)) \
                else excerpt(path)
            raise NotFoundError(f"SEARCH IMAGE: the query image {excerpt(shown)} does not "
                                f"exist (looked for {looked})",
                                hint="Relative paths are relative to the notebook's folder.")
        problem = not_a_file(path)
        if problem is not None:
            raise DataError(f"SEARCH IMAGE: the query image {excerpt(shown)} is {problem}")
        info = os.stat(path)
        keys.append((digest, node.model, path, info.st_dev, info.st_ino, info.st_size,
                     info.st_mtime_ns))
    # a model registered before digests were recorded has none to tell its versions apart
    known = [services.loader.query_embedding(key) if digest else None for key in keys]
    if all(v is not None for v in known):
        return np.stack(known)   # type: ignore[arg-type]
    # a few images through the small network: threads only add the cost of meeting (1 thread
    # beat 2 by 1.6x quiet and busy, bench/busy_cpu.py); a torchvision network shares them
    light = model.spec.kind == "small" and len(paths) <= 16
    with cpu_share(services.settings.threads, light=light).running():
        embedded = embed(model, load_images(paths, model.image_size, model.channels,
                                            what="SEARCH IMAGE"))
    if not np.isfinite(embedded).all():
        raise DataError(f"SEARCH IMAGE: the model {node.model!r} makes embeddings that are not "
                        "numbers (NaN): its weights are damaged",
                        hint=f"Build it again: BUILD MODEL {node.model} … OPTIONS "
                             "(overwrite=True).")
    for key, vector in zip(keys, embedded, strict=True):
        if digest:
            services.loader.remember_query(key, vector.copy())
    return embedded


def _query_images(node: SearchImage, options: dict[str, Any], base: str
                  ) -> tuple[bool, list[str], list[str]]:
    """(second generation?, the query image paths, their similarity columns' names)."""
    given = options["search_input"]
    if node.images and given is not None:
        raise OptionError("SEARCH IMAGE: give the query image either as images=… or as "
                          "OPTIONS (search_input=…), not both")
    queries = list(node.images) if node.images else (
        [given] if isinstance(given, str) else list(given or []))
    if not queries or not all(isinstance(q, str) for q in queries):
        raise OptionError("SEARCH IMAGE needs a query image",
                          hint="Write SEARCH IMAGE images='path.jpg' USING model AS …, or "
                               "OPTIONS (search_by='image', search_input='path.jpg').")
    second = given is not None
    return second, queries, similarity_columns(node.model, base, len(queries), second=second,
                                               result_col=options["result_col"])


def _ranked(similarity: np.ndarray, limit: int | None) -> np.ndarray:
    """Row indices by similarity, best first, at most ``limit``; equal similarities keep the
    rows' order (a stable sort: argpartition would pick among ties at the cut arbitrarily)."""
    import numpy as np

    order = np.argsort(-similarity, kind="stable")
    return order if limit is None else order[:limit]


class _LoadingBar:
    """The progress of reading a column into its compact copy, the first SEARCH of it in a
    kernel: shown once the reading has taken half a second, so small tables show nothing."""

    _QUIET_S = 0.5

    def __init__(self, run: Run, column: str) -> None:
        self._run, self._column = run, column
        self._started = time.monotonic()
        self._key = f"search-load-{column}-{self._started}"
        self._shown = False

    def __call__(self, done: int, total: int, finished: bool) -> None:
        elapsed = time.monotonic() - self._started
        if not self._shown and (finished or elapsed < self._QUIET_S):
            return   # done, or not yet, before it was worth a bar
        self._shown = True
        self._run.report(Progress(
            self._key, f"SEARCH IMAGE: loading {self._column}", done, total, "vectors",
            elapsed, detail="into memory for exact search, once per kernel", finished=finished))


def _search_with_index(services: Services, run: Run, node: SearchImage, emb_col: str,
                       image_col: str, names: list[str], vector: np.ndarray, k: int,
                       digest: str | None) -> Table | None:
    """The top k from the converted column, when its vectors still cover the table.

    The catalog names the candidate rows (exactly, from the vectors in memory, up to
    ``exact_search_max_rows`` rows; approximately, from the vector index, beyond); the rows'
    own vectors score them. None means: use the row-by-row path.
    """
    query = node.query
    if not isinstance(query, Sql) or query.subqueries:
        return None
    store, catalog = services.store, services.catalog
    found = store.shape(query.text)
    if found is None or not (found.star_only or found.star_where):
        return None
    bar = _LoadingBar(run, f"{found.tables[0]}.{emb_col}")
    with store.begin() as tx:
        entry = catalog.entry(tx, found.tables[0], emb_col)
        if entry is not None:
            refuse_others(entry, "SEARCH IMAGE", node.model, digest)
        if entry is None or entry.image_col != image_col:
            return None
        if not catalog.covers(tx, entry):
            return None  # some rows have no embedding: the row-by-row path embeds them
        if found.star_where:
            return _search_kept(services, run, tx, entry, query, names, vector, k, bar)
        candidates = catalog.candidates(tx, entry, vector, k, bar)
        fetched = catalog.rows_at(tx, entry, candidates)
    if not _whole(fetched, entry) or len({str(row[_at(fetched, image_col)])
                                          for row in fetched.rows}) != len(set(candidates)):
        # rows went or changed since CONVERT: the row-by-row path reads them as they are,
        # and says what is wrong with a value that is not an embedding
        return None
    return _best(fetched, entry, names, vector, k)


def _at(table: Table, column: str) -> int:
    return [c.lower() for c in table.columns].index(column)


def _whole(fetched: Table, entry: EmbeddingColumn) -> bool:
    """Whether the rows fetched have the column, and in each an embedding of the column's
    width, as CONVERT wrote them."""
    columns = [c.lower() for c in fetched.columns]
    if entry.column_name not in columns or entry.image_col not in columns:
        return False
    i_emb = columns.index(entry.column_name)
    width = entry.dim * 4   # float32 bytes
    values = [row[i_emb] for row in fetched.rows]
    if not set(map(type, values)) <= {bytes, memoryview}:   # the usual case at C speed
        return all(isinstance(v, (bytes, memoryview)) and len(v) == width for v in values)
    return not values or set(map(len, values)) == {width}


#: candidates the filtered search checks against the WHERE at first, and by how many
#: times more each round at most, until the top k of the rows kept is certain; past 4,096
#: (a WHERE that keeps fewer than k of the best rows) every kept row is read
_KEPT_FIRST, _KEPT_GROWTH, _KEPT_MOST = 64, 4, 4096
#: rows the read of every kept row takes at a time, between looks at the clock; and the time
#: it is given after a round that was not enough: the round's, times this (the growth: as
#: long as the next round is expected to take; bench/search.py's 1 % filter on an indexed
#: column at 100k rows 6.7-7.0 ms against 12.2-12.9 for the round's time alone, the others
#: the same or better)
_KEPT_CHUNK, _KEPT_RACE = 64, float(_KEPT_GROWTH)
#: seconds a row asked past which a round was not answered by the paths' index (a few
#: microseconds a path, with the round's fixed cost: 64 paths in 0.3-0.6 ms on 2 cores;
#: answered by the index of the WHERE's column, 3 ms at a million rows, 40 at 10 million:
#: bench/search.py's indexed 0.1 % filter at a million rows 15.6 ms, 18 without this)
_SLOW_ASKING = 30e-6
#: rows read that the read of every kept row scores at once (and holds at most, beside the
#: best k): fewer, more numpy calls; more, more memory
_KEPT_SCORED = 4096
#: a kept row read (found by an index, looked up, sent, scored) costs about what this many
#: rows of the compact copy's scan cost (a million rows: 1,000 kept rows read in 2.7-4.8
#: ms, the scan and the rounds' set-up 6.4 ms, on 2 cores)
_READ_PER_SCANNED = 500


def _search_kept(services: Services, run: Run, tx: Any, entry: EmbeddingColumn, query: Sql,
                 names: list[str], vector: np.ndarray, k: int, bar: _LoadingBar
                 ) -> Table | None:
    """The top k of the rows ``SELECT * FROM t WHERE …`` keeps, from the compact copy.

    Two ways race, and the first to finish answers:

    - rounds: the best rows of the scan are asked whether the WHERE keeps them (the query,
      restricted to their image paths: the database evaluates the WHERE, on the index of the
      paths), and the kept ones are scored from the column. Once the k-th best score of the
      kept rows beats every upper bound not yet asked, no other row can be in the top k.
      Quick when the WHERE keeps many rows: the first few hundred hold k of them. Each round
      asks for about twice the rows the share kept so far says hold k (``_next_round``).
    - every kept row: the query's whole answer, read a chunk at a time, its rows scored by
      their vectors. Quick when the WHERE keeps few rows and the database finds them
      without reading the table (an index on the columns it tests).

    Where the share kept so far says the read could be the quicker (``_next_round``), it
    goes on after each round that was not enough for as long as the next round is expected
    to take (the last one's time, times ``_KEPT_GROWTH``), then the next round runs: turns
    of about equal time, so a search costs a small multiple of the quicker way at most.
    Which is quicker cannot be told beforehand: the database may answer a round from the
    index of the paths (a few microseconds a row asked) or, choosing the index of the
    WHERE's own column, by reading every kept row for it. Past ``_KEPT_MOST`` candidates
    the rounds stop and the read finishes. Either way the answer is exact, never short.
    """
    import numpy as np

    from ..vectors import blobs_to_matrix, cosine_scores

    few = services.store.count_by_index(tx, query.text, run.params,
                                        _fewest_for_rounds(entry.row_count, k))
    if few is not None and _read_first(few, entry.row_count, k):
        # the database finds the kept rows by an index, and they are so few that reading
        # them all costs less than the scan and its rounds: no scan, no round
        first = _KeptRows(services, tx, entry, query, run.params, vector, k, _KEPT_SCORED)
        try:
            first.read_for(None)
            return _every_best(services, tx, first, entry, query, run, names, vector, k)
        finally:
            first.close()
    rounds = services.catalog.best_first(tx, entry, vector, _KEPT_FIRST, _KEPT_GROWTH,
                                         _KEPT_MOST, bar)
    if rounds is None:
        return None   # beyond the exact limit: the row-by-row path
    quote = services.store.quote
    restricted = (f"SELECT * FROM ({query.text}) AS thanosql_kept WHERE "
                  f"{quote(entry.image_col)} IN :thanosql_paths")
    every = _KeptRows(services, tx, entry, query, run.params, vector, k)
    kept: list[tuple[Any, ...]] = []
    columns: tuple[str, ...] = ()
    scores = np.zeros(0)
    asked, took, ahead = 0, 0.0, None
    try:
        while True:
            paths, bound = rounds.send(ahead)
            if took and every.read_for(took * _KEPT_RACE):
                break   # every kept row read before this round would have been done
            if paths is None:
                # the WHERE keeps too few of the best rows: the database evaluates it on
                # every row, and the rows it keeps are read to the end
                every.read_for(None)
                break
            started = time.perf_counter()
            if paths:
                fetched = services.store.read(tx, restricted, {
                    **run.params, "thanosql_paths": tuple(dict.fromkeys(paths))})
                if not _whole(fetched, entry):
                    return None
                columns, i_emb = fetched.columns, _at(fetched, entry.column_name)
                kept.extend(fetched.rows)
                if fetched.rows:
                    scores = np.concatenate([scores, cosine_scores(blobs_to_matrix(
                        [bytes(r[i_emb]) for r in fetched.rows], entry.dim), vector)])
            if bound == -np.inf or (len(scores) >= k and float(np.sort(scores)[-k]) > bound):
                if not columns:   # nothing kept: the row-by-row path answers with the
                    return None   # query's columns
                return _best(Table(columns, tuple(kept)), entry, names, vector, k, scores)
            asked += len(paths)
            took = time.perf_counter() - started
            ahead, race = _next_round(asked, len(kept), k, entry.row_count,
                                      took / max(1, len(paths)))
            took = took if race else 0.0
        return _every_best(services, tx, every, entry, query, run, names, vector, k)
    finally:
        every.close()


def _every_best(services: Services, tx: Any, every: _KeptRows, entry: EmbeddingColumn,
                query: Sql, run: Run, names: list[str], vector: np.ndarray, k: int
                ) -> Table | None:
    """The answer from every kept row, all of them read."""
    best = every.best
    if best is None:
        return None   # a kept row without a path or a whole vector: row by row
    whole, best_scores = best
    if not whole.columns:   # no row kept: the query's columns
        whole = services.store.read(tx, f"SELECT * FROM ({query.text}) AS thanosql_kept "
                                        f"LIMIT 0", run.params)
    return _best(whole, entry, names, vector, k, best_scores)


def _read_first(kept: int, rows: int, k: int) -> bool:
    """Whether reading ``kept`` rows of ``rows`` is quicker than the scan and its rounds:
    the scan costs what ``rows / _READ_PER_SCANNED`` rows read cost, and the rounds about
    a row looked up for each of the 2 k / f best rows they ask about (f = kept / rows:
    ``_next_round``), about what a row read costs; so: kept < rows / 500 + 2 k rows / kept
    (a million rows, k = 10: up to 4,000 kept rows; ten million: up to 27,000)."""
    return kept * kept < kept * rows / _READ_PER_SCANNED + 2 * k * rows


def _fewest_for_rounds(rows: int, k: int) -> int:
    """The most kept rows for which ``_read_first`` holds (its quadratic's positive root)."""
    scanned = rows / _READ_PER_SCANNED
    return int((scanned + math.sqrt(scanned * scanned + 8 * k * rows)) / 2)


def _next_round(asked: int, kept: int, k: int, rows: int, each: float) -> tuple[int, bool]:
    """After rounds that asked about ``asked`` rows and found ``kept`` of them kept, the
    last one in ``each`` seconds a row asked: how many rows in all the next round should
    have asked about, and whether the read of every kept row gets a turn before it.

    The share kept so far, f (a row kept and one not added, so it is never 0 or 1), says
    that the top k lie among about k / f of the best rows: the next round asks for twice
    that (so that the k-th kept row's score clears the bound of the rows left), at least
    twice and at most ``_KEPT_GROWTH`` times the rows asked so far. The rounds cost about a
    row looked up per k / f, the read a row per f * rows kept (and more where the database
    must read the table to find them): the read can only be quicker where f^2 * rows is
    below about 4 k (turns after every round, each of the round's own time, measured
    slower: bench/search.py's 10 % filter 1.4x, its 1 % one 1.4x at a million rows).
    Unless a round costs far more a row than looking it up by its path (``_SLOW_ASKING``):
    then the database answered it by reading the rows the WHERE keeps (by the index of the
    WHERE's own column), which is about what the read costs, once."""
    share = (kept + 1) / (asked + 2)
    wanted = int(min(_KEPT_GROWTH * asked, max(2 * asked, 2 * k / share)))
    return wanted, share * share * rows < 4 * k or each > _SLOW_ASKING


class _KeptRows:
    """The best rows a query keeps, whole, read a chunk at a time for as long as it is
    given (``read_for``), scored by their vectors as they come: only the rows that reach
    the k-th best score so far (ties at it included) are kept, so memory holds k rows and
    the rows not yet scored (at most ``_KEPT_SCORED`` of them), whatever the query keeps.
    ``best`` (the rows and their scores) once all are read; None if any row had no image
    path or no whole vector."""

    def __init__(self, services: Services, tx: Any, entry: EmbeddingColumn, query: Sql,
                 params: Any, vector: np.ndarray, k: int, chunk: int = _KEPT_CHUNK) -> None:
        import numpy as np

        self._sql = f"SELECT * FROM ({query.text}) AS thanosql_kept"
        self._services, self._tx, self._params, self._entry = services, tx, params, entry
        self._vector, self._k, self._chunk = vector, k, chunk
        self._chunks: Generator[Table, None, None] | None = None
        self._kept: list[tuple[Any, ...]] = []      # the best so far
        self._scores = np.zeros(0)                  # theirs
        self._pending: list[tuple[Any, ...]] = []   # read, not yet scored
        self._columns: tuple[str, ...] = ()
        self._whole = True
        self.done = False

    @property
    def best(self) -> tuple[Table, np.ndarray] | None:
        if not (self.done and self._whole):
            return None
        return Table(self._columns, tuple(self._kept)), self._scores

    def read_for(self, seconds: float | None) -> bool:
        """Read on for about ``seconds`` (None: to the end); whether every row is read."""
        if self.done:
            return True
        if self._chunks is None:
            self._chunks = self._services.store.stream(self._tx, self._sql, self._params,
                                                       self._chunk)
        until = None if seconds is None else time.perf_counter() + seconds
        entry = self._entry
        for chunk in self._chunks:
            self._columns = chunk.columns
            # _whole first: it makes sure the query has both columns
            self._whole = _whole(chunk, entry)
            if self._whole:
                i_image = _at(chunk, entry.image_col)
                self._whole = None not in [row[i_image] for row in chunk.rows]
            if not self._whole:
                self.done = True   # the row-by-row path answers: nothing more to read
                return True
            self._pending.extend(chunk.rows)
            if len(self._pending) >= _KEPT_SCORED:
                self._score()
            if until is not None and time.perf_counter() >= until:
                return False
        self._score()
        self.done = True
        return True

    def _score(self) -> None:
        """The rows read so far scored, and only those reaching the k-th best kept."""
        import numpy as np

        from ..vectors import blobs_to_matrix, cosine_scores

        if not self._pending:
            return
        i_emb = [c.lower() for c in self._columns].index(self._entry.column_name)
        scores = np.concatenate([self._scores, cosine_scores(blobs_to_matrix(
            [bytes(row[i_emb]) for row in self._pending], self._entry.dim), self._vector)])
        rows = self._kept + self._pending
        self._pending = []
        reach = _reaching(scores, self._k)
        self._kept, self._scores = [rows[i] for i in reach.tolist()], scores[reach]

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()


def _reaching(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the scores that reach the k-th best (ties at it included), in order;
    all of them when there are k or fewer."""
    import numpy as np

    if len(scores) <= k:
        return np.arange(len(scores))
    return np.flatnonzero(scores >= np.partition(scores, len(scores) - k)[len(scores) - k])


def _best(fetched: Table, entry: EmbeddingColumn, names: list[str], vector: np.ndarray, k: int,
          scores: np.ndarray | None = None) -> Table:
    """The k best of the rows fetched by their own vectors' cosine, with it as a column."""
    from ..vectors import blobs_to_matrix, cosine_scores

    i_img, i_emb = _at(fetched, entry.image_col), _at(fetched, entry.column_name)
    if scores is None:
        scores = cosine_scores(blobs_to_matrix([bytes(row[i_emb]) for row in fetched.rows],
                                               entry.dim), vector)
    # best first; equal similarities (the same image twice) in image-path order: sorted
    # among the rows that reach the k-th best score (ties at it included), not all of them
    order = sorted(_reaching(scores, k).tolist(),
                   key=lambda i: (-scores[i], str(fetched.rows[i][i_img])))[:k]
    out = tuple(tuple(fetched.rows[i]) + (float(scores[i]),) for i in order)
    return Table(fetched.columns + tuple(names), out,
                 vector_columns=frozenset({entry.column_name}))

"""The compact copy of a converted column that exact SEARCH scans: each unit vector as int8
codes times one scale, and a bound on what the codes lose, so that a scan reading a quarter of
float32's bytes still names every row that can be in the exact top k.

For a row's unit vector u (float32) the codes c (int8, |c| <= 127) and scale s (a bfloat16
number, at least max|u| / 127) give w = s * c; ``error`` is ||u - w|| (float64, rounded up).
The scan is torch's int8-weight matrix product (``aten._weight_int8pack_mm``, the kernel
quantised language models run on): a bfloat16 query, int8 rows, a bfloat16 scale per row,
products summed in float32 and the sum rounded to bfloat16. It reads D + 2 bytes a row
against float32's 4 D and, on this AVX2 machine, is 2.5x faster than numpy's float32 scan
(bench/search.py prints both). What each step can be off by, for a unit query v:

- the float32 unit vectors against the exact ones: gamma = (D + 4) float32 roundoffs each;
- the query rounded to bfloat16, q: delta = ||v - q||, computed for each query;
- the codes: |u . q - w . q| <= error * ||q|| (Cauchy-Schwarz);
- the float32 sum of D products: D roundoffs of sum |q_k w_k| <= ||q|| ||w||;
- the result rounded to bfloat16: 2^-8 of its size.

So every row's exact cosine lies within ``margin`` of its scanned value, and a row of the
exact top k scans at least the k-th largest lower bound (k rows reach that bound, so the
k-th exact value does too): ``candidates`` returns every row whose upper bound reaches it,
ties with the k-th row included, and scoring those exactly gives the exact top k.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: float32's and bfloat16's unit roundoffs
_F32 = 2.0 ** -24
_BF16 = 2.0 ** -8
#: the codes' range: symmetric, so -u codes as -c
_LEVELS = 127
#: codes per row come in multiples of this: the kernel's AVX-512 loop reads 16 aligned at a
#: time, its AVX2 loop 8
_LANES = 32


@dataclass
class CompactVectors:
    """A column's unit vectors as int8 codes (n, D), bfloat16 scales (n,) and float32 bounds
    (n,) on each row's ||u - s * c||; ``torch`` tensors, so the scan runs on them in place."""

    codes: torch.Tensor     # int8 (n, D rounded up to _LANES)
    scales: torch.Tensor    # bfloat16 (n,)
    errors: np.ndarray
    #: the vectors' length D; the codes may have more columns, all zero (``_LANES``)
    dim: int

    @property
    def count(self) -> int:
        return int(self.errors.shape[0])

    @property
    def nbytes(self) -> int:
        return self.count * (int(self.codes.shape[1]) + 2 + 4)

    @classmethod
    def from_chunks(cls, chunks: Iterable[np.ndarray], at_most: int, dim: int
                    ) -> CompactVectors:
        """The compact copy of at most ``at_most`` rows arriving as float32 chunks (m, D) of
        any length; memory beyond the copy itself is one chunk's."""
        import torch

        # the kernel reads a row 8 or 16 codes at a time, aligned: zero columns pad it
        codes = torch.zeros((at_most, -(-dim // _LANES) * _LANES), dtype=torch.int8)
        scales = torch.empty(at_most, dtype=torch.bfloat16)
        errors = np.empty(at_most, dtype=np.float32)

        def place(start: int, future: Future[tuple[np.ndarray, torch.Tensor, np.ndarray]]
                  ) -> None:
            c, s, e = future.result()
            codes[start:start + len(c), :dim] = torch.from_numpy(c)
            scales[start:start + len(c)] = s
            errors[start:start + len(c)] = e

        done = 0
        pending: tuple[int, Future[tuple[np.ndarray, torch.Tensor, np.ndarray]]] | None = None
        # a thread quantizes each chunk while the next one is read (numpy and torch let go of
        # the interpreter lock; a database cursor mostly waits on the disk or the socket)
        with ThreadPoolExecutor(1, thread_name_prefix="thanosql-quantize") as pool:
            for chunk in chunks:
                end = done + len(chunk)
                if end > at_most:
                    raise ValueError(f"more than the {at_most:,} rows announced")
                future = pool.submit(quantize, chunk)
                if pending is not None:
                    place(*pending)
                pending, done = (done, future), end
            if pending is not None:
                place(*pending)
        if done < at_most:   # a copy, so the rows never read leave no memory behind
            codes, scales, errors = codes[:done].clone(), scales[:done].clone(), \
                errors[:done].copy()
        return cls(codes, scales, errors, dim)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> CompactVectors:
        matrix = np.asarray(matrix, dtype=np.float32)
        return cls.from_chunks([matrix], matrix.shape[0], matrix.shape[1])

    def _scanned(self, query: np.ndarray) -> tuple[torch.Tensor, float]:
        """Every row's scanned similarity to ``query`` (bfloat16 (n,)), and delta."""
        import torch

        from .exact import normalize

        v = normalize(np.asarray(query, dtype=np.float32).reshape(1, self.dim))
        q = torch.zeros((1, int(self.codes.shape[1])), dtype=torch.bfloat16)
        q[:, :self.dim] = torch.from_numpy(v)
        scanned = torch.ops.aten._weight_int8pack_mm(q, self.codes, self.scales)[0]
        delta = float(np.linalg.norm(v[0].astype(np.float64)
                                     - q[0, :self.dim].to(torch.float32).numpy()
                                     .astype(np.float64)))
        return scanned, delta

    def _margin(self, a: np.ndarray, errors: np.ndarray, delta: float) -> np.ndarray:
        """How far from ``a`` (float64, scanned values) the exact cosines may lie, for rows
        whose error bounds are ``errors``: the sum of the steps in the module's docstring,
        raised by 1 %."""
        d = int(self.codes.shape[1])   # the zero columns are summed too (exactly)
        gamma = (d + 4) * _F32
        q_norm = 1.0 + gamma + delta
        e = errors.astype(np.float64)
        margin = (gamma + (1.0 + gamma) * (gamma + delta) + e * q_norm
                  + d * _F32 * q_norm * (1.0 + gamma + e)) * 1.01
        return margin + np.abs(a) * (_BF16 / (1.0 - _BF16)) * 1.01 + 1e-9

    def scan(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row's scanned similarity to ``query`` and the margin its exact cosine lies
        within (both float64 (n,)). ``candidates`` computes the margin of few rows only."""
        import torch

        scanned, delta = self._scanned(query)
        a = scanned.to(torch.float32).numpy().astype(np.float64)
        return a, self._margin(a, self.errors, delta)

    def candidates(self, query: np.ndarray, k: int, rows: np.ndarray | None = None
                   ) -> np.ndarray:
        """Indices (ascending) of every row that may be among the k most like ``query`` by
        exact cosine; with ``rows`` (ascending indices), among those rows only.

        The k best scanned rows give a threshold (the least of their lower bounds: k rows
        reach it, so the k-th exact value does); rows within the widest margin of it are
        few; their own margins decide. Both steps look at blocks' maxima first (a top-k or
        a comparison over a million values costs as much as a fifth of the scan), so only
        the blocks that hold candidates are read row by row.
        """
        import torch

        n = self.count if rows is None else len(rows)
        if k <= 0 or n == 0:
            return np.empty(0, dtype=np.intp)
        scanned, delta = self._scanned(query)
        values = scanned.to(torch.float32)
        errors = self.errors
        if rows is not None:
            values, errors = values[torch.from_numpy(np.asarray(rows, dtype=np.int64))], \
                errors[rows]
        if k >= n:
            return np.arange(self.count) if rows is None else np.asarray(rows)
        # maxima of n / block blocks, then the rows of the few blocks with candidates: the
        # sum of the two is least near sqrt(n / candidates), some 30 for a top 10
        block = max(16, min(1024, int((n / (3 * k)) ** 0.5), n // (8 * k)))
        whole = n // block * block
        maxima = values[:whole].view(-1, block).amax(1)
        if whole < n:
            maxima = torch.cat([maxima, values[whole:].amax().reshape(1)])
        v, peaks = values.numpy(), maxima.numpy()   # the small steps are cheaper in numpy
        if len(peaks) >= k:   # the best row of each of the k best blocks: k rows, near the best
            rows_in = _rows_of(np.argpartition(peaks, len(peaks) - k)[-k:], block, n)
            top = rows_in[np.arange(k), np.where(rows_in < n, v[np.minimum(rows_in, n - 1)],
                                                 -np.inf).argmax(1)]
        else:
            top = torch.topk(values, k, sorted=False).indices.numpy()
        a_top = v[top].astype(np.float64)
        threshold = float(np.min(a_top - self._margin(a_top, errors[top], delta)))
        # the widest margin any row can have (|a| <= 1 + its margin)
        widest_error = self._widest if rows is None else errors.max(initial=0.0, keepdims=True)
        widest = float(self._margin(np.array([1.1]), widest_error, delta)[0])
        near = threshold - widest - 1e-6
        span = _rows_of(np.flatnonzero(peaks >= near), block, n).ravel()
        span = span[span < n]
        close = span[v[span] >= near]
        a = v[close].astype(np.float64)
        found = close[a + self._margin(a, errors[close], delta) >= threshold]
        return found if rows is None else np.asarray(rows)[found]

    def best_first(self, query: np.ndarray, first: int, growth: int, most: int
                   ) -> Generator[tuple[np.ndarray, float], int | None, None]:
        """Rows in order of their scanned values, a round at a time: each round yields the
        rows not yet yielded (about ``first``, then ``growth`` times more each round, or, sent
        to the generator, about how many in all the next round should bring, at least one
        more; at most ``most`` in all before the last round yields the rest) and a bound no
        row left for later rounds can beat (the upper bound of its exact cosine; -inf when
        none is left).

        For a search with a filter: the kept rows of the rows yielded so far, scored exactly,
        hold the top k once their k-th score beats the bound.
        """
        import torch

        scanned, delta = self._scanned(query)
        values = scanned.to(torch.float32)
        n = self.count
        v = values.numpy()
        widest = float(self._margin(np.array([1.1]), self._widest, delta)[0])
        block = max(16, min(1024, int((n / (3 * first)) ** 0.5)))
        whole = n // block * block
        maxima = values[:whole].view(-1, block).amax(1)
        if whole < n:
            maxima = torch.cat([maxima, values[whole:].amax().reshape(1)])
        peaks = maxima.numpy()
        order = np.argsort(-peaks, kind="stable")   # blocks, best first
        given = np.zeros(n, dtype=bool)
        wanted = first
        while True:
            if wanted >= min(most, len(order)):
                yield np.flatnonzero(~given), -np.inf
                return
            # every row above the best block left out: rows below it, anywhere, come later
            level = float(peaks[order[wanted]])
            rows = _rows_of(order[:wanted], block, n).ravel()
            rows = rows[rows < n]
            rows = rows[(v[rows] > level) & ~given[rows]]
            given[rows] = True
            asked = yield rows, level + widest
            wanted = wanted * growth if asked is None else max(wanted + 1, asked)

    @functools.cached_property
    def _widest(self) -> np.ndarray:
        return self.errors.max(initial=0.0, keepdims=True)


def _rows_of(blocks: np.ndarray, block: int, n: int) -> np.ndarray:
    """The row indices (len(blocks), block) of blocks of ``block`` rows, ascending; the last
    block may run past ``n``: its indices there are >= n."""
    return np.sort(blocks)[:, None] * block + np.arange(block)[None, :]


def quantize(matrix: np.ndarray) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """(int8 codes, bfloat16 scales as a torch tensor, float32 error bounds) of the rows of
    ``matrix`` made unit length; an all-zero row has codes 0, scale 1 and error 0."""
    import torch

    from .exact import normalize

    u = normalize(matrix)
    top = np.abs(u).max(axis=1) if u.shape[1] else np.zeros(len(u), dtype=np.float32)
    wanted = np.where(top > 0, top / _LEVELS, 1.0).astype(np.float32)
    # bfloat16 rounds to nearest, within 2^-8 of the value: raised by 2^-7 first, the scale
    # is never below what keeps every code within +-127
    scales = torch.from_numpy(wanted * np.float32(1.0 + 2.0 ** -7)).to(torch.bfloat16)
    s = scales.to(torch.float32).numpy()
    codes = np.clip(np.rint(u / s[:, None]), -_LEVELS, _LEVELS).astype(np.int8)
    # in float32, and still a bound: a code times a scale (8 bits by 8) is exact, the
    # difference from u is off by one roundoff of itself, the sum of D squares (in any
    # order) and its root by D + 2 more, the raising itself by one: twice that is added
    lost = codes.astype(np.float32)
    lost *= s[:, None]
    np.subtract(u, lost, out=lost)
    errors = np.sqrt(np.einsum("ij,ij->i", lost, lost))
    errors *= np.float32(1.0 + 2 * (u.shape[1] + 8) * _F32)
    errors += np.float32(1e-12)
    return codes, scales, errors

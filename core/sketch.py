"""Mergeable quantile sketches with a relative-error guarantee, many at once (DDSketch-style).

What it is for: rollups keep one sketch per (device, sensor, window) so that quantiles of any
union of windows (an hour from its minutes, a month from its days) can be answered without the
raw readings. `Sketches` holds `n` sketches in one columnar batch; building, merging, querying
and (de)serialising are whole-array numpy over all of them, never a Python step per value.
It must not look at readings one by one, and it never stores values, only bucket counts.

Buckets. With relative accuracy `alpha` (default 0.01, a whole number of millionths in
[1e-4, 0.5]) and `gamma = (1 + a) / (1 - a)` for `a = alpha * (1 - 2**-20)` (the small margin
absorbs the rounding of `log` and `exp`), a value `x` with `|x| >= 2**-1022` (the smallest
normal float64) falls in bucket `i = ceil(log_gamma |x|)`, which covers `(gamma**(i-1),
gamma**i]` and is represented by `2 gamma**i / (gamma + 1)` (capped at the largest float64):
every value of the bucket is within relative error `a < alpha` of that representative. Negative
values use the same buckets on `|x|`, mirrored; zero and the subnormals (`|x| < 2**-1022`) share
a zero bucket represented by 0. A bucket is one int32 key ordered like the values it holds:
`key = sign(x) * (i + bias)` with `bias = ceil(360 / alpha) + 1`, and 0 for the zero bucket.

The bound (what `Sketches.quantiles` guarantees; tests/unit/test_sketch.py checks exactly this).
Let a sketch hold `n >= 1` values, sorted `x(0) <= ... <= x(n-1)`, and `0 <= q <= 1`. Ranks
follow numpy's default ("linear") method: `h = (n - 1) q`, `k = floor(h)`, `K = ceil(h)`,
`f = h - k`, so `x(k)` is `numpy.quantile(values, q, method="lower")` and `x(K)` is
`method="higher"`. Let `e(j)` be the representative of the bucket that holds `x(j)`. Then

    |e(j) - x(j)| <= alpha * |x(j)|     for x(j) == 0 or |x(j)| >= 2**-1022,
    |e(j) - x(j)|  = |x(j)| < 2**-1022  for subnormal x(j),

and the answer is `q_hat = (1 - f) e(k) + f e(K)`, so, up to the rounding of that one
interpolation, `|q_hat - quantile(values, q)| <= alpha * ((1 - f) |x(k)| + f |x(K)|)`, which
is `alpha * |quantile(values, q)|` whenever `x(k)` and `x(K)` do not straddle zero.
Merging sketches (adding bucket counts) gives exactly the sketch of the union of their values,
so the bound holds after any number of merges.

Serialisation, format 1: each sketch is standard base64 (RFC 4648, padded) of a run of unsigned
LEB128 varints: the format tag 1, alpha in millionths, the number of buckets `m`, then the `m`
keys as zigzag-encoded deltas (the first from 0), then the `m` counts. Keys strictly increase.
Example: `alpha=0.01` holding the single value 1.0 (key 36001) is bytes
`01 90 4e 01 c2 b2 04 01`, text `AZBOAcKyBAE=`. A new layout gets a new tag; decoders refuse
tags they do not know.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
U64 = NDArray[np.uint64]

FORMAT_V1 = 1
DEFAULT_ALPHA = 0.01
MIN_ALPHA = 1e-4
MAX_ALPHA = 0.5
#: The smallest normal float64: below it (zero included) values go to the zero bucket.
TINY = float(np.finfo(np.float64).tiny)
_FMAX = float(np.finfo(np.float64).max)
#: Buckets are cut for a slightly smaller alpha, so log/exp rounding cannot exceed alpha.
_MARGIN = 2.0**-20
_MAX_VARINT_BYTES = 10


@dataclass(frozen=True, slots=True)
class _Mapping:
    """Bucket geometry for one alpha (in millionths)."""

    ppm: int
    log_gamma: float
    log_representative: float
    bias: int
    max_key: int


@lru_cache(maxsize=16)
def _mapping(ppm: int) -> _Mapping:
    a = ppm / 1e6 * (1.0 - _MARGIN)
    log_gamma = math.log1p(2.0 * a / (1.0 - a))
    gamma = (1.0 + a) / (1.0 - a)
    # |ln x| <= 709 for normal x and ln(gamma) >= 2a, so |i| < 355 / alpha: bias keeps keys >= 1.
    bias = (360_000_000 + ppm - 1) // ppm + 1
    return _Mapping(
        ppm=ppm,
        log_gamma=log_gamma,
        log_representative=math.log(2.0 / (gamma + 1.0)),
        bias=bias,
        max_key=2 * bias,
    )


def alpha_ppm(alpha: float) -> int:
    """Alpha in whole millionths; raises unless alpha is one and lies in [1e-4, 0.5]."""
    if not MIN_ALPHA <= alpha <= MAX_ALPHA:
        raise ValueError(f"alpha {alpha} is not within [{MIN_ALPHA}, {MAX_ALPHA}]")
    ppm = round(alpha * 1e6)
    if not math.isclose(ppm / 1e6, alpha, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"alpha {alpha} is not a whole number of millionths")
    return ppm


def bucket_keys(value: F64, alpha: float = DEFAULT_ALPHA) -> I32:
    """The bucket key of each value (see the module docstring); refuses NaN and infinities."""
    if not np.isfinite(value).all():
        raise ValueError("sketches hold finite values only")
    m = _mapping(alpha_ppm(alpha))
    magnitude = np.abs(value)
    normal = magnitude >= TINY
    index = np.ceil(np.log(magnitude[normal]) / m.log_gamma).astype(np.int64) + m.bias
    key = np.zeros(len(value), dtype=np.int64)
    key[normal] = np.where(value[normal] < 0, -index, index)
    return key.astype(np.int32)


def representatives(key: I32, alpha: float = DEFAULT_ALPHA) -> F64:
    """The value each bucket key stands for (0 for the zero bucket)."""
    m = _mapping(alpha_ppm(alpha))
    magnitude = np.abs(key.astype(np.int64))
    with np.errstate(over="ignore"):
        rep = np.exp((magnitude - m.bias) * m.log_gamma + m.log_representative)
    rep = np.minimum(rep, _FMAX)
    rep[magnitude == 0] = 0.0
    return np.where(key < 0, -rep, rep)


def _ranges(offsets: I64, index: NDArray[np.intp] | I64) -> tuple[I64, I64]:
    """Positions of the buckets of sketches `index`, in order, and the size of each."""
    sizes = (offsets[1:] - offsets[:-1])[index]
    total = int(sizes.sum())
    starts = offsets[:-1][index]
    out_offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out_offsets[1:])
    within = np.arange(total, dtype=np.int64) - np.repeat(out_offsets[:-1], sizes)
    return np.repeat(starts, sizes) + within, out_offsets


def _group(cell: I64, key: I32, count: I64, n_cells: int) -> tuple[I64, I32, I64]:
    """Offsets, keys and counts of the sketches that pool buckets by cell (count-summed)."""
    offsets = np.zeros(n_cells + 1, dtype=np.int64)
    if len(key) == 0:
        return offsets, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
    key64 = key.astype(np.int64)
    low = int(key64.min())
    span = int(key64.max()) - low + 1
    if n_cells * span < 2**62:
        composite = cell * span + (key64 - low)
        order = np.argsort(composite, kind="stable")
        ordered = composite[order]
        new = np.ones(len(order), dtype=np.bool_)
        new[1:] = ordered[1:] != ordered[:-1]
    else:
        order = np.lexsort((key64, cell))
        c, k = cell[order], key64[order]
        new = np.ones(len(order), dtype=np.bool_)
        new[1:] = (c[1:] != c[:-1]) | (k[1:] != k[:-1])
    starts = np.flatnonzero(new)
    out_count = np.add.reduceat(count[order], starts).astype(np.int64)
    out_key = key[order][starts]
    out_cell = cell[order][starts]
    offsets[:] = np.searchsorted(out_cell, np.arange(n_cells + 1), side="left")
    return offsets, out_key.astype(np.int32), out_count


@dataclass(frozen=True, slots=True, eq=False)
class Sketches:
    """`n` sketches in columnar form: sketch `c` owns buckets `offsets[c]:offsets[c + 1]`.

    Within a sketch, `key` strictly increases (so buckets are in value order) and every
    `count` is positive. All sketches of a batch share one `alpha`.
    """

    alpha: float
    offsets: I64
    key: I32
    count: I64

    def __post_init__(self) -> None:
        alpha_ppm(self.alpha)
        if self.offsets.dtype != np.int64 or self.offsets.ndim != 1 or len(self.offsets) < 1:
            raise TypeError("Sketches.offsets must be a non-empty 1-D int64 array")
        if self.key.dtype != np.int32 or self.count.dtype != np.int64:
            raise TypeError("Sketches.key must be int32 and Sketches.count int64")
        if self.key.shape != self.count.shape or self.key.ndim != 1:
            raise ValueError("Sketches.key and Sketches.count must be 1-D and equally long")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.key):
            raise ValueError("Sketches.offsets must run from 0 to the number of buckets")
        if bool(np.any(np.diff(self.offsets) < 0)):
            raise ValueError("Sketches.offsets must not decrease")
        if bool(np.any(self.count <= 0)):
            raise ValueError("Sketches.count must be positive")
        step = np.diff(self.key.astype(np.int64))
        first = np.zeros(len(self.key), dtype=np.bool_)
        first[self.offsets[:-1][self.offsets[:-1] < len(self.key)]] = True
        if bool(np.any(step[~first[1:]] <= 0)):
            raise ValueError("Sketches.key must strictly increase within each sketch")
        max_key = _mapping(alpha_ppm(self.alpha)).max_key
        if bool(np.any(np.abs(self.key.astype(np.int64)) > max_key)):
            raise ValueError("Sketches.key out of range for this alpha")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, n: int = 0, alpha: float = DEFAULT_ALPHA) -> Sketches:
        """`n` sketches holding nothing."""
        return cls(
            alpha,
            np.zeros(n + 1, dtype=np.int64),
            np.empty(0, dtype=np.int32),
            np.empty(0, dtype=np.int64),
        )

    @classmethod
    def from_values(
        cls,
        cell: NDArray[np.integer],
        value: F64,
        n_cells: int,
        *,
        alpha: float = DEFAULT_ALPHA,
    ) -> Sketches:
        """`n_cells` sketches; value `j` goes into sketch `cell[j]` (which is in `[0, n_cells)`)."""
        if cell.shape != value.shape:
            raise ValueError("cell and value must be equally long")
        if len(cell) and (int(cell.min()) < 0 or int(cell.max()) >= n_cells):
            raise ValueError("cell out of range")
        keys = bucket_keys(value, alpha)
        ones = np.ones(len(keys), dtype=np.int64)
        offsets, key, count = _group(cell.astype(np.int64), keys, ones, n_cells)
        return cls(alpha, offsets, key, count)

    @classmethod
    def concat(cls, parts: Sequence[Sketches]) -> Sketches:
        """Batches end to end (all with the same alpha)."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        alpha = parts[0].alpha
        if any(p.alpha != alpha for p in parts):
            raise ValueError("cannot join sketches of different alpha")
        shift = np.cumsum([0] + [len(p.key) for p in parts[:-1]])
        offsets = np.concatenate(
            [np.zeros(1, dtype=np.int64)]
            + [p.offsets[1:] + s for p, s in zip(parts, shift, strict=True)]
        )
        return cls._joined(
            alpha,
            offsets.astype(np.int64),
            np.concatenate([p.key for p in parts]),
            np.concatenate([p.count for p in parts]),
        )

    @classmethod
    def _joined(cls, alpha: float, offsets: I64, key: I32, count: I64) -> Sketches:
        """Sketches made of whole valid sketches (a concatenation, a selection).

        Those are valid already, so `__post_init__`'s O(n) checks are skipped, as `slice` does.
        """
        made = object.__new__(cls)
        object.__setattr__(made, "alpha", alpha)
        object.__setattr__(made, "offsets", offsets)
        object.__setattr__(made, "key", key)
        object.__setattr__(made, "count", count)
        return made

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def totals(self) -> I64:
        """How many values each sketch holds."""
        running = np.zeros(len(self.count) + 1, dtype=np.int64)
        np.cumsum(self.count, out=running[1:])
        return running[self.offsets[1:]] - running[self.offsets[:-1]]

    def slice(self, start: int, stop: int) -> Sketches:
        """Sketches `start:stop`, sharing memory with these (no copy, no re-validation)."""
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        part = object.__new__(Sketches)
        # A run of valid sketches is valid: skipping __post_init__ keeps this O(1).
        object.__setattr__(part, "alpha", self.alpha)
        object.__setattr__(part, "offsets", self.offsets[start : stop + 1] - first)
        object.__setattr__(part, "key", self.key[first:last])
        object.__setattr__(part, "count", self.count[first:last])
        return part

    def take(self, index: NDArray[np.integer] | NDArray[np.bool_]) -> Sketches:
        """The sketches selected by an index array or boolean mask, in that order."""
        picked = np.arange(len(self))[index]
        positions, offsets = _ranges(self.offsets, picked)
        return Sketches._joined(self.alpha, offsets, self.key[positions], self.count[positions])

    def merge(self, into: NDArray[np.integer], n_cells: int) -> Sketches:
        """`n_cells` sketches where sketch `c` is the union of every sketch `j` with `into[j] == c`.

        Counts of equal buckets add, so the result is exactly the sketch of the pooled values.
        Sketches with a negative `into` are left out.
        """
        if len(into) != len(self):
            raise ValueError("into must have one cell per sketch")
        sizes = self.offsets[1:] - self.offsets[:-1]
        cell = np.repeat(into.astype(np.int64), sizes)
        keep = cell >= 0
        if len(cell) and int(cell.max(initial=-1)) >= n_cells:
            raise ValueError("into out of range")
        offsets, key, count = _group(cell[keep], self.key[keep], self.count[keep], n_cells)
        return Sketches(self.alpha, offsets, key, count)

    def equals(self, other: Sketches) -> bool:
        """The same sketches, bucket for bucket."""
        return (
            self.alpha == other.alpha
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.key, other.key)
            and np.array_equal(self.count, other.count)
        )

    # -- queries ------------------------------------------------------------------------------

    def at_rank(self, rank: NDArray[np.integer]) -> F64:
        """Estimate of the `rank[c]`-th smallest value (0-based) of each sketch `c`.

        This is `e(j)` of the module docstring: within `alpha` (relative) of the exact value.
        Ranks must lie in `[0, totals)`; raises `ValueError` otherwise.
        """
        totals = self.totals
        rank = np.asarray(rank, dtype=np.int64)
        if rank.shape != totals.shape or bool(np.any((rank < 0) | (rank >= totals))):
            raise ValueError("rank out of range")
        running = np.cumsum(self.count)
        base = np.concatenate(([0], running))[self.offsets[:-1]]
        bucket = np.searchsorted(running, base + rank, side="right")
        return representatives(self.key[bucket], self.alpha)

    def quantiles(self, qs: Sequence[float]) -> F64:
        """Estimates of shape `(len(qs), n)`, NaN for empty sketches; bound in the module doc."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile {q} is not within [0, 1]")
        out = np.full((len(qs), len(self)), np.nan)
        totals = self.totals
        present = totals > 0
        if not present.any():
            return out
        some = self.take(present)
        n = totals[present]
        for row, q in zip(out, qs, strict=True):
            h = (n - 1) * float(q)
            lower = np.floor(h)
            f = h - lower
            e_lower = some.at_rank(lower.astype(np.int64))
            e_higher = some.at_rank(np.ceil(h).astype(np.int64))
            # (1 - f) a + f b cannot overflow where a + f (b - a) could.
            row[present] = (1.0 - f) * e_lower + f * e_higher
        return out

    # -- serialisation ------------------------------------------------------------------------

    def encode(self) -> list[str]:
        """One base64 text per sketch (format 1, see the module docstring)."""
        n = len(self)
        if n == 0:
            return []
        ppm = alpha_ppm(self.alpha)
        sizes = self.offsets[1:] - self.offsets[:-1]
        key = self.key.astype(np.int64)
        previous = np.zeros(len(key), dtype=np.int64)
        previous[1:] = key[:-1]
        starts = self.offsets[:-1][sizes > 0]
        previous[starts] = 0
        delta = key - previous
        zigzag = ((delta << 1) ^ (delta >> 63)).astype(np.uint64)

        token_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(3 + 2 * sizes, out=token_offsets[1:])
        tokens = np.empty(int(token_offsets[-1]), dtype=np.uint64)
        head = token_offsets[:-1]
        tokens[head] = FORMAT_V1
        tokens[head + 1] = ppm
        tokens[head + 2] = sizes.astype(np.uint64)
        cell = np.repeat(np.arange(n, dtype=np.int64), sizes)
        within = np.arange(len(key), dtype=np.int64) - self.offsets[cell]
        tokens[head[cell] + 3 + within] = zigzag
        tokens[head[cell] + 3 + sizes[cell] + within] = self.count.astype(np.uint64)

        data, byte_offsets = _varint_encode(tokens)
        blob = data.tobytes()
        cuts = byte_offsets[token_offsets].tolist()
        return [base64.b64encode(blob[a:b]).decode("ascii") for a, b in itertools.pairwise(cuts)]

    @classmethod
    def decode(cls, texts: Sequence[str], *, alpha: float | None = None) -> Sketches:
        """Sketches from their texts; raises `ValueError` on anything malformed.

        All texts must carry the same alpha (and `alpha`, when given). An empty sequence gives
        an empty batch of `alpha` (default 0.01).
        """
        if not texts:
            return cls.empty(0, DEFAULT_ALPHA if alpha is None else alpha)
        try:
            raw = [base64.b64decode(t, validate=True) for t in texts]
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"malformed sketch text: {exc}") from exc
        lengths = np.fromiter((len(r) for r in raw), dtype=np.int64, count=len(raw))
        if bool(np.any(lengths == 0)):
            raise ValueError("malformed sketch: empty text")
        byte_offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum(lengths, out=byte_offsets[1:])
        data = np.frombuffer(b"".join(raw), dtype=np.uint8)
        tokens, token_offsets = _varint_decode(data, byte_offsets)
        return cls._from_tokens(tokens, token_offsets, alpha)

    @classmethod
    def _from_tokens(cls, tokens: U64, token_offsets: I64, alpha: float | None) -> Sketches:
        n_tokens = token_offsets[1:] - token_offsets[:-1]
        if bool(np.any(n_tokens < 3)):
            raise ValueError("malformed sketch: truncated header")
        head = token_offsets[:-1]
        tags = tokens[head]
        if bool(np.any(tags != FORMAT_V1)):
            raise ValueError(f"unknown sketch format {int(tags[tags != FORMAT_V1][0])}")
        ppms = tokens[head + 1]
        ppm = int(ppms[0])
        if bool(np.any(ppms != ppm)):
            raise ValueError("sketches of different alpha in one batch")
        found = ppm / 1e6
        if alpha is not None and alpha_ppm(alpha) != ppm:
            raise ValueError(f"sketch alpha {found} differs from the expected {alpha}")
        mapping = _mapping(alpha_ppm(found))
        sizes_u = tokens[head + 2]
        if bool(np.any(sizes_u > (n_tokens - 3).astype(np.uint64))):
            raise ValueError("malformed sketch: bucket count exceeds its length")
        sizes = sizes_u.astype(np.int64)
        if bool(np.any(n_tokens != 3 + 2 * sizes)):
            raise ValueError("malformed sketch: length does not match its bucket count")
        n = len(head)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        cell = np.repeat(np.arange(n, dtype=np.int64), sizes)
        within = np.arange(int(offsets[-1]), dtype=np.int64) - offsets[cell]
        zigzag = tokens[head[cell] + 3 + within]
        counts = tokens[head[cell] + 3 + sizes[cell] + within]
        if bool(np.any(zigzag > np.uint64(4 * mapping.max_key))) or bool(
            np.any((counts == 0) | (counts >= np.uint64(2**63)))
        ):
            raise ValueError("malformed sketch: key or count out of range")
        delta = (zigzag >> np.uint64(1)).astype(np.int64) ^ -(zigzag & np.uint64(1)).astype(
            np.int64
        )
        running = np.cumsum(delta)
        before = np.concatenate(([0], running))[offsets[:-1]]
        key = running - before[cell]
        if bool(np.any(np.abs(key) > mapping.max_key)):
            raise ValueError("malformed sketch: key out of range")
        return cls(found, offsets, key.astype(np.int32), counts.astype(np.int64))


def _varint_encode(tokens: U64) -> tuple[NDArray[np.uint8], I64]:
    """LEB128 bytes of every token, and where each token's bytes start (plus the end)."""
    size = np.ones(len(tokens), dtype=np.int64)
    for group in range(1, _MAX_VARINT_BYTES):
        size += tokens >= np.uint64(1 << (7 * group))
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(size, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    for group in range(_MAX_VARINT_BYTES):
        has = size > group
        if not has.any():
            break
        seven = (tokens[has] >> np.uint64(7 * group)) & np.uint64(0x7F)
        more = np.where(size[has] > group + 1, np.uint64(0x80), np.uint64(0))
        out[offsets[:-1][has] + group] = (seven | more).astype(np.uint8)
    return out, offsets


def _varint_decode(data: NDArray[np.uint8], byte_offsets: I64) -> tuple[U64, I64]:
    """Tokens of concatenated varint runs, and where each run's tokens start (plus the end)."""
    ends = data < 0x80
    if not bool(ends[byte_offsets[1:] - 1].all()):
        raise ValueError("malformed sketch: truncated varint")
    last = np.flatnonzero(ends)
    first = np.zeros(len(last), dtype=np.int64)
    first[1:] = last[:-1] + 1
    if bool(np.any(last - first >= _MAX_VARINT_BYTES)):
        raise ValueError("malformed sketch: varint longer than 64 bits")
    before = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(ends, out=before[1:])
    token_of_byte = before[:-1]
    shift = (np.arange(len(data), dtype=np.int64) - first[token_of_byte]) * 7
    parts = (data & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    tokens = np.bitwise_or.reduceat(parts, first) if len(first) else parts[:0]
    return tokens.astype(np.uint64), before[byte_offsets]

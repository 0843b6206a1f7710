"""Uncertainty of a cell's numbers: bootstrap intervals over images, paired differences between cells, and
a guard against captions that ignore the image (pure numpy/pandas, no I/O).

The bootstrap resamples a cell's images with replacement. A resample is kept as a count matrix
`W` (resamples × images: how often each image was drawn), built once from one seeded index matrix and
reused for every metric of the cell, so each resampled statistic is a matrix product or a weighted
quantile instead of a loop:

- mean metrics (CIDEr, METEOR, ROUGE-L, seconds per image): `W @ x / W @ valid`, over the images that
  have the value (an error row has no score; its image still counts as drawn, as it does in the cell);
- BLEU-4 is not a mean of per-image scores: it is recomputed from the resampled sums of the per-image
  n-gram statistics (`bleu_testlen`, `bleu_reflen`, `bleu_guess_k`, `bleu_correct_k`), as pycocoevalcap
  computes corpus BLEU;
- latency p50 is the median of `batch_latency_sec` (numpy's linear percentile) of each resample.

Intervals are percentile intervals (level 95% by default) of the resampled statistic. Rows are sorted
by `sample_id` first, so the same table gives the same interval whatever its row order.

A paired difference `a - b` aligns two cells' tables on `sample_id`, keeps the images both have a value
for, and computes both statistics on the same resamples: what is shared by the images (an easy image is
easy for both cells) cancels, so the interval is narrower than the two cells' intervals suggest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep.quality.frontier import OBJECTIVES, tied

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95

#: metrics whose cell value is the mean of a per-image column of the same name
MEAN_METRICS = ("cider", "meteor", "rouge_l")
BLEU_ORDER = 4
BLEU_COLUMNS = ("bleu_testlen", "bleu_reflen",
                *(f"bleu_guess_{k}" for k in range(1, BLEU_ORDER + 1)),
                *(f"bleu_correct_{k}" for k in range(1, BLEU_ORDER + 1)))
#: per-image costs: result column -> (caption-table column, statistic); the objectives' from the frontier
COSTS = {**{o.paired: o.per_image for o in OBJECTIVES.values() if o.paired and o.per_image},
         "seconds_per_image": ("processing_time_sec", "mean")}
#: every metric with an interval, in the order of the results columns
CI_METRICS = ("cider", "meteor", "rouge_l", "bleu_4", *COSTS)

# pycocoevalcap's guards against empty counts (bleu_scorer.py): the same constants give the same numbers
_SMALL = 1e-9
_TINY = 1e-15

#: degenerate output: at least this many captioned images, and one caption on at least this share of them
DEGENERATE_MIN_IMAGES = 5
DEGENERATE_SHARE = 0.9


def ci_columns(metric: str) -> tuple[str, str]:
    return f"{metric}_ci_low", f"{metric}_ci_high"


def resample_counts(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples, n) float matrix: how many times each of n images is drawn in each resample.

    Built from one seeded index matrix (`n_resamples` draws of n images with replacement)."""
    if n <= 0:
        return np.zeros((n_resamples, 0))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = (idx + (np.arange(n_resamples) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def corpus_bleu(testlen: np.ndarray, reflen: np.ndarray, guess: np.ndarray, correct: np.ndarray,
                order: int = BLEU_ORDER) -> np.ndarray:
    """Corpus BLEU-`order` from summed statistics, vectorised over leading axes.

    `testlen`, `reflen`: shape (...); `guess`, `correct`: shape (..., >= order), column k-1 holding the
    k-gram sums. Brevity penalty × geometric mean over k <= order of correct_k / guess_k, with
    pycocoevalcap's guards (so an all-zero corpus scores 0, not NaN)."""
    testlen, reflen = np.asarray(testlen, float), np.asarray(reflen, float)
    guess, correct = np.asarray(guess, float), np.asarray(correct, float)
    precision = (correct[..., :order] + _TINY) / (guess[..., :order] + _SMALL)
    bleu = np.prod(precision, axis=-1) ** (1.0 / order)
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, _TINY)), 1.0)
    return bleu * penalty


def _bleu_stats(table: pd.DataFrame) -> np.ndarray | None:
    """(n, 2 + 2*order) per-image BLEU statistics in BLEU_COLUMNS order, or None when the table has none."""
    if not all(c in table for c in BLEU_COLUMNS):
        return None
    return table[list(BLEU_COLUMNS)].to_numpy(dtype=float)


def _bleu_from_sums(sums: np.ndarray) -> np.ndarray:
    k = BLEU_ORDER
    return corpus_bleu(sums[..., 0], sums[..., 1], sums[..., 2:2 + k], sums[..., 2 + k:2 + 2 * k])


def _weighted_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean of `values` over each resample, NaN values left out (their images still drawn)."""
    valid = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ np.where(valid, values, 0.0)) / (counts @ valid.astype(float))


def _weighted_quantile(counts: np.ndarray, values: np.ndarray, q: float) -> np.ndarray:
    """numpy's linear-interpolation percentile of each resample (values repeated by their counts)."""
    valid = ~np.isnan(values)
    order = np.argsort(values[valid], kind="stable")
    x = values[valid][order]
    c = counts[:, valid][:, order]
    total = c.sum(axis=1)
    out = np.full(counts.shape[0], np.nan)
    if x.size == 0:
        return out
    cum = np.cumsum(c, axis=1)
    pos = np.maximum(total - 1, 0) * q
    lo = np.floor(pos)
    hi = np.minimum(lo + 1, np.maximum(total - 1, 0))
    # the k-th (0-based) value of a sorted resample is the first sorted value whose running count exceeds k
    x_lo = x[np.minimum((cum <= lo[:, None]).sum(axis=1), x.size - 1)]
    x_hi = x[np.minimum((cum <= hi[:, None]).sum(axis=1), x.size - 1)]
    return np.where(total > 0, x_lo + (pos - lo) * (x_hi - x_lo), out)


def _cost_values(table: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in table:
        return None
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    if "error" in table:  # an image that failed waited for nothing: costs are over captioned images
        values = np.where(table["error"].fillna("").astype(str).to_numpy() == "", values, np.nan)
    return values


def _metric_values(table: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Per-image values of a mean metric or cost (NaN where the image has none), or None if absent."""
    if metric in COSTS:
        return _cost_values(table, COSTS[metric][0])
    if metric in table:
        return pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    return None


def resampled(counts: np.ndarray, table: pd.DataFrame, metric: str) -> np.ndarray | None:
    """The metric on each resample of `counts` (rows of `table` in the same order), or None when the
    table has no per-image data for it."""
    if metric == "bleu_4":
        stats = _bleu_stats(table)
        if stats is None:
            return None
        valid = ~np.isnan(stats).any(axis=1)
        if not valid.any():
            return np.full(counts.shape[0], np.nan)
        return _bleu_from_sums(counts[:, valid] @ stats[valid])
    values = _metric_values(table, metric)
    if values is None:
        return None
    if metric in COSTS and COSTS[metric][1] == "median":
        return _weighted_quantile(counts, values, 0.5)
    return _weighted_mean(counts, values)


def point_value(table: pd.DataFrame, metric: str) -> float:
    """The metric over the whole table, computed as the resamples compute it."""
    return float(resampled(np.ones((1, len(table))), table, metric)[0])


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    if "sample_id" not in table:
        return table.reset_index(drop=True)
    return table.sort_values("sample_id", kind="stable").reset_index(drop=True)


def cell_intervals(table: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                   level: float = LEVEL, metrics: tuple[str, ...] = CI_METRICS) -> dict[str, float]:
    """`<metric>_ci_low` / `<metric>_ci_high` for each metric the caption table has per-image data for
    (NaN for the others), from one resample matrix over the table's images."""
    table = _sorted(table)
    counts = resample_counts(len(table), n_resamples, seed)
    out: dict[str, float] = {}
    for metric in metrics:
        draws = resampled(counts, table, metric) if len(table) else None
        low, high = _interval(draws, level) if draws is not None else (math.nan, math.nan)
        out.update(zip(ci_columns(metric), (low, high), strict=True))
    return out


@dataclass(frozen=True)
class Difference:
    """A paired difference a - b of one metric over the n images both cells have it for."""

    metric: str
    estimate: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def tie(self) -> bool:
        """The interval includes zero: at this sample size the two cells cannot be told apart
        (`sweep.quality.frontier.tied`)."""
        return tied(self)

    def flipped(self) -> Difference:
        return Difference(self.metric, -self.estimate, -self.high, -self.low, self.n)

    def images_to_separate(self) -> float:
        """About how many images would make the interval just exclude zero: the half-width shrinks as
        1/sqrt(n), so n * (h / d)^2. Inf when the estimate is 0."""
        if self.estimate == 0 or math.isnan(self.estimate):
            return math.inf
        return self.n * (self.half_width / self.estimate) ** 2


def _has(table: pd.DataFrame, metric: str) -> bool:
    """The table has per-image data for the metric (values may still be NaN)."""
    if metric == "bleu_4":
        return _bleu_stats(table) is not None
    return _metric_values(table, metric) is not None


def _valid(table: pd.DataFrame, metric: str) -> np.ndarray:
    """Which rows have the metric's per-image value (all BLEU statistics for bleu_4)."""
    if metric == "bleu_4":
        return ~np.isnan(_bleu_stats(table)).any(axis=1)
    return ~np.isnan(_metric_values(table, metric))


def _prepared(table: pd.DataFrame) -> pd.DataFrame:
    """One row per image (the first), sample ids as str, sorted by them."""
    table = table.assign(sample_id=table["sample_id"].astype(str)).drop_duplicates("sample_id", keep="first")
    return _sorted(table)


class Comparisons:
    """Paired differences between the cells of a sweep, computed on demand and cached.

    `tables`: cell id -> caption table with per-image columns. `difference(a, b, metric)` is the paired
    bootstrap of `metric(a) - metric(b)` over the images both tables have the metric for (aligned by
    sample_id, the same resamples for both; None when either cell has no table or no per-image values).
    Cells scored on the same images share one resample matrix, and each cell's resampled metric is
    computed once, so comparing every pair of k cells costs k resampled metrics, not k^2."""

    _KEPT_MATRICES = 4  # resample matrices kept (one per distinct set of shared images)

    def __init__(self, tables: Mapping[str, pd.DataFrame], n_resamples: int = N_RESAMPLES, seed: int = SEED,
                 level: float = LEVEL):
        self.tables = {cid: _prepared(t) for cid, t in tables.items() if "sample_id" in t}
        self.n_resamples, self.seed, self.level = n_resamples, seed, level
        self._ids: dict[tuple[str, str], np.ndarray | None] = {}
        self._counts: dict[bytes, np.ndarray] = {}
        self._draws: dict[tuple[str, str, bytes], tuple[np.ndarray, float]] = {}
        self._cache: dict[tuple[str, str, str], Difference | None] = {}

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self.tables

    def _valid_ids(self, cell_id: str, metric: str) -> np.ndarray | None:
        key = (cell_id, metric)
        if key not in self._ids:
            table = self.tables[cell_id]
            self._ids[key] = (table["sample_id"].to_numpy(dtype=str)[_valid(table, metric)]
                              if _has(table, metric) else None)
        return self._ids[key]

    def _resampled(self, cell_id: str, metric: str, common: np.ndarray,
                   key: bytes) -> tuple[np.ndarray, float]:
        if (cell_id, metric, key) not in self._draws:
            if key not in self._counts:
                if len(self._counts) >= self._KEPT_MATRICES:
                    self._counts.pop(next(iter(self._counts)))
                self._counts[key] = resample_counts(len(common), self.n_resamples, self.seed)
            table = self.tables[cell_id]
            rows = table[table["sample_id"].isin(common)]  # sorted, as `common` is
            self._draws[(cell_id, metric, key)] = (resampled(self._counts[key], rows, metric),
                                                   point_value(rows, metric))
        return self._draws[(cell_id, metric, key)]

    def difference(self, a: str, b: str, metric: str = "cider") -> Difference | None:
        if a not in self.tables or b not in self.tables:
            return None
        if (b, a, metric) in self._cache:
            other = self._cache[(b, a, metric)]
            return other.flipped() if other is not None else None
        if (a, b, metric) not in self._cache:
            self._cache[(a, b, metric)] = self._compute(a, b, metric)
        return self._cache[(a, b, metric)]

    def _compute(self, a: str, b: str, metric: str) -> Difference | None:
        ids_a, ids_b = self._valid_ids(a, metric), self._valid_ids(b, metric)
        if ids_a is None or ids_b is None:
            return None
        common = np.intersect1d(ids_a, ids_b)  # sorted
        if common.size == 0:
            return None
        key = common.tobytes() + str(common.dtype).encode()
        draws_a, point_a = self._resampled(a, metric, common, key)
        draws_b, point_b = self._resampled(b, metric, common, key)
        low, high = _interval(draws_a - draws_b, self.level)
        return Difference(metric, point_a - point_b, low, high, int(common.size))


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str = "cider", n_resamples: int = N_RESAMPLES,
                      seed: int = SEED, level: float = LEVEL) -> Difference | None:
    """Paired bootstrap of `metric(a) - metric(b)` over the images both caption tables have it for (aligned
    by sample_id, the same resamples for both). None when either table lacks the metric or they share no
    image. The estimate is over those shared images, so it can differ from the difference of the two
    cells' values when their errors differ."""
    return Comparisons({"a": a, "b": b}, n_resamples, seed, level).difference("a", "b", metric)


def _normalised(caption: object) -> str:
    return " ".join(str(caption).lower().split())


def degenerate_output(table: pd.DataFrame, min_images: int = DEGENERATE_MIN_IMAGES,
                      share: float = DEGENERATE_SHARE) -> float:
    """1.0 when the captions do not depend on the image: at least `min_images` different images were
    captioned and one caption (compared lower-cased, whitespace collapsed; an empty caption counts) is
    the caption of at least `share` of them; else 0.0 (also when too few images to tell)."""
    if "caption" not in table or table.empty:
        return 0.0
    ok = table[table["error"].fillna("").astype(str) == ""] if "error" in table else table
    if "sample_id" in ok:
        ok = ok.drop_duplicates("sample_id", keep="first")
    if len(ok) < min_images:
        return 0.0
    top = ok["caption"].fillna("").map(_normalised).value_counts().iloc[0]
    return 1.0 if top >= share * len(ok) else 0.0

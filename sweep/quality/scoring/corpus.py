"""The corpus scores of a cell from its per-image columns, for any subset of rows without rescoring: BLEU's
n-gram statistics per image, summed as pycocoevalcap's BleuScorer does; the means of CIDEr, METEOR and
ROUGE-L."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from sweep.quality.scoring.cider import NGRAM_ORDER, ngrams
from sweep.quality.statistics import BLEU_COLUMNS, corpus_bleu
from sweep.results.tables import CORPUS_QUALITY

METRIC_KEYS = CORPUS_QUALITY  # declared with the results table

#: the per-image columns a scored cell's caption table carries (NaN on rows that were not scored)
PER_IMAGE_COLUMNS = ("cider", "meteor", "rouge_l", *BLEU_COLUMNS)


def bleu_statistics_of_grams(hyp: list[Counter[str]], refs: Sequence[list[Counter[str]]]) -> list[float]:
    """[testlen, reflen, guess_1..4, correct_1..4] of one image, in BLEU_COLUMNS order."""
    testlen = sum(hyp[0].values())
    ref_lens = [sum(ref[0].values()) for ref in refs]
    reflen = min(ref_lens, key=lambda n: (abs(n - testlen), n))  # "closest"; a tie takes the shorter
    guess = [max(0, testlen - k + 1) for k in range(1, len(hyp) + 1)]
    correct = []
    for order, grams in enumerate(hyp):
        correct.append(sum(min(count, max(ref[order].get(gram, 0) for ref in refs))
                           for gram, count in grams.items()))
    return [float(testlen), float(reflen), *map(float, guess), *map(float, correct)]


def bleu_statistics(hypothesis: str, references: Sequence[str]) -> dict[str, float]:
    """BLEU's n-gram statistics of one tokenized caption against its references (BLEU_COLUMNS)."""
    values = bleu_statistics_of_grams(ngrams(hypothesis), [ngrams(r) for r in references])
    return dict(zip(BLEU_COLUMNS, values, strict=True))


def corpus_scores(table: pd.DataFrame) -> dict[str, float]:
    """Corpus metrics (METRIC_KEYS) of the scored rows of a table with the per-image columns.

    Works on any subset of rows: CIDEr, METEOR and ROUGE-L are the means of the per-image values; BLEU-1..4
    come from the summed n-gram statistics as pycocoevalcap computes corpus BLEU. METEOR is thus the mean
    of per-image METEOR, not pycocoevalcap's corpus METEOR (which pools the matching statistics of all
    images first; on val2017's human leave-one-out 0.248 here against its 0.242). Rows whose per-image
    values are NaN (not scored) are left out; NaN everywhere when no row is scored.
    """
    missing = [c for c in PER_IMAGE_COLUMNS if c not in table]
    if missing:
        raise KeyError(f"table lacks the per-image columns {missing}")
    scored = table.dropna(subset=list(PER_IMAGE_COLUMNS))
    if scored.empty:
        return {key: math.nan for key in METRIC_KEYS}
    sums = scored[list(BLEU_COLUMNS)].sum().to_numpy(dtype=float)
    guess, correct = sums[2:2 + NGRAM_ORDER], sums[2 + NGRAM_ORDER:]
    bleu = [corpus_bleu(sums[0], sums[1], guess, correct, order=k) for k in range(1, NGRAM_ORDER + 1)]
    out = {"cider": float(scored["cider"].mean())}
    out.update({f"bleu_{k}": float(value) for k, value in enumerate(bleu, start=1)})
    out["meteor"] = float(scored["meteor"].mean())
    out["rouge_l"] = float(scored["rouge_l"].mean())
    return out


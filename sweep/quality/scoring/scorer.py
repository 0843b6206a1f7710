"""`CaptionScorer`: one call scores a cell, per image (CIDEr-D, METEOR, ROUGE-L, BLEU's statistics) and as
a corpus (`corpus_scores` of them, + SPICE when its jars are present), on one PTB tokenization."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pycocoevalcap.rouge.rouge import Rouge

from sweep.quality.scoring.cider import DF_SCORED_SUBSET, DocumentFrequencies, cider_d_of_grams, ngrams
from sweep.quality.scoring.corpus import PER_IMAGE_COLUMNS, bleu_statistics_of_grams, corpus_scores
from sweep.quality.scoring.meteor import MeteorJVM
from sweep.quality.scoring.spice import spice_score
from sweep.quality.scoring.tokenizer import tokenize
from sweep.quality.statistics import BLEU_COLUMNS


@dataclass
class CellScores:
    """One scoring call: per-image values (indexed by the prediction ids, in their order; columns
    PER_IMAGE_COLUMNS), the corpus scores (corpus_scores of them, + spice when SPICE ran), and where
    CIDEr's document frequencies came from."""

    per_image: pd.DataFrame
    corpus: dict[str, float]
    document_frequencies: str


class CaptionScorer:
    """Scores predicted captions against references, per image and as a corpus: CIDEr-D, BLEU-1..4,
    METEOR, ROUGE-L (+ a corpus SPICE if present).

    Holds one METEOR process, taken at the first score (the process's idle one, else a new one) and
    reused until close(), which leaves it idle for the next scorer of the process; a later score takes
    one again. Calls are serialised by a lock, so sharing one scorer between threads is safe
    but not parallel.
    """

    def __init__(self, spice: bool = True, meteor_timeout_s: float = 600.0) -> None:
        self.use_spice = spice
        self.notes: list[str] = []
        self.call_notes: list[str] = []  # the notes of the last call about its predictions alone
        self._meteor = MeteorJVM(meteor_timeout_s)
        self._lock = threading.RLock()

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Gives the METEOR JVM back (idle for the next scorer of this process, stopped at exit)."""
        with self._lock:
            self._meteor.close()

    def score(self, predictions: Mapping[Any, str], references: Mapping[Any, list[str]],
              document_frequencies: DocumentFrequencies | None = None) -> dict[str, float]:
        """Corpus scores of `predictions` (id -> caption) against `references` (id -> captions):
        `score_images(...).corpus`."""
        return self.score_images(predictions, references, document_frequencies).corpus

    def score_images(self, predictions: Mapping[Any, str], references: Mapping[Any, list[str]],
                     document_frequencies: DocumentFrequencies | None = None) -> CellScores:
        """Per-image and corpus scores of `predictions` (id -> caption) against `references`.

        Only ids in `predictions` are scored. CIDEr's document frequencies are `document_frequencies`
        (e.g. `reference_set_frequencies` of the dataset's captions file); None takes them from the
        scored references, as pycocoevalcap does: then CIDEr depends on which images are scored, and it
        is 0 for a single image. One tokenizer JVM run and one METEOR request for the whole call.
        """
        ids = list(predictions)
        _check_inputs(predictions, references)

        with self._lock:
            self.notes = []
            self.call_notes = []
            # Positional keys: pycocoevalcap (SPICE) sorts ids, which fails on mixed str/int ids.
            # One tokenizer call (one JVM start) for predictions and references together.
            tok = tokenize({**{("res", i): [predictions[image_id]] for i, image_id in enumerate(ids)},
                            **{("gts", i): list(references[image_id]) for i, image_id in enumerate(ids)}})
            res = {i: tok[("res", i)] for i in range(len(ids))}
            gts = {i: tok[("gts", i)] for i in range(len(ids))}

            hyp_grams = [ngrams(res[i][0]) for i in range(len(ids))]
            ref_grams = [[ngrams(r) for r in gts[i]] for i in range(len(ids))]
            if document_frequencies is None:
                df = DocumentFrequencies._from_grams(ref_grams, source=DF_SCORED_SUBSET)
                df_used = f"{DF_SCORED_SUBSET}: {df.describe()}"
            else:
                df = document_frequencies
                df_used = df.describe()
            columns: dict[str, list[float]] = {"cider": cider_d_of_grams(hyp_grams, ref_grams, df)}
            columns["meteor"] = self._meteor.scores(gts, res)[1]
            columns["rouge_l"] = [float(v) for v in Rouge().compute_score(gts, res)[1]]
            stats = [bleu_statistics_of_grams(h, r) for h, r in zip(hyp_grams, ref_grams, strict=True)]
            for j, name in enumerate(BLEU_COLUMNS):
                columns[name] = [row[j] for row in stats]
            per_image = pd.DataFrame(columns, index=pd.Index(ids, dtype=object),
                                     columns=list(PER_IMAGE_COLUMNS))
            out = corpus_scores(per_image)

            n_empty = sum(1 for caps in res.values() if not caps[0].strip())
            if n_empty:
                note = f"{n_empty} of {len(ids)} predictions empty after tokenization (scored 0)"
                self.notes.append(note)
                self.call_notes.append(note)  # about these predictions: the caller names whose they are
            self._maybe_spice(gts, res, out)
            return CellScores(per_image, out, df_used)

    def pycocoevalcap_scores(self, predictions: Mapping[Any, str],
                             references: Mapping[Any, list[str]]) -> dict[str, float]:
        """The corpus scores as pycocoevalcap computes them (and this scorer did before per-image scores):
        its Cider (document frequencies from the scored references), Bleu, corpus METEOR and Rouge on one
        tokenization. For comparison with published numbers and as the benchmarks' "before"."""
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider

        ids = list(predictions)
        tok = tokenize({**{("res", i): [predictions[i]] for i in ids},
                        **{("gts", i): references[i] for i in ids}})
        res = {n: tok[("res", i)] for n, i in enumerate(ids)}
        gts = {n: tok[("gts", i)] for n, i in enumerate(ids)}
        with self._lock:
            out = {"cider": float(Cider().compute_score(gts, res)[0])}
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            out.update({f"bleu_{k}": float(b) for k, b in enumerate(bleu, start=1)})
            out["meteor"] = self._meteor.scores(gts, res)[0]
            out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        return out

    def _maybe_spice(
        self, gts: dict[int, list[str]], res: dict[int, list[str]], out: dict[str, float]
    ) -> None:
        if not self.use_spice:
            self.notes.append("SPICE skipped: disabled (spice=False)")
            return
        score, skipped = spice_score(gts, res)
        if skipped is not None:
            self.notes.append(f"SPICE skipped: {skipped}")
        else:
            out["spice"] = score


def _check_inputs(predictions: Mapping[Any, str], references: Mapping[Any, list[str]]) -> None:
    """Every prediction a str with a non-empty list of str references, or an error naming the id."""
    if not predictions:
        raise ValueError("no predictions to score")
    for image_id in predictions:
        if image_id not in references:
            raise ValueError(f"no references for image id {image_id!r}")
        refs = references[image_id]
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise TypeError(f"references[{image_id!r}] must be a list of str")
        if len(refs) == 0:
            raise ValueError(f"empty reference list for image id {image_id!r}")
        if not isinstance(predictions[image_id], str):
            raise TypeError(f"prediction for image id {image_id!r} is not a str")

"""Caption quality metrics (COCO protocol), per image, on top of pycocoevalcap.

`CaptionScorer.score_images` scores a cell in one call: per image CIDEr-D, METEOR, ROUGE-L and the n-gram
statistics BLEU needs (`PER_IMAGE_COLUMNS`), and the corpus scores recomputed from them by
`corpus_scores`, which gives the same corpus numbers for any subset of the rows without rescoring:

- CIDEr-D is computed here (`cider_d`) with pycocoevalcap's definition (1- to 4-grams, clipped tf-idf
  cosine, Gaussian length penalty with sigma 6, times 10), but its document frequencies come from a given
  reference corpus (`DocumentFrequencies`). Taken from every reference of the dataset's captions file
  (`reference_set_frequencies`), an image's CIDEr no longer depends on which other images are scored and
  the cell's CIDEr is the mean of its per-image CIDEr. Without one, the document frequencies come from the
  scored images' references, as pycocoevalcap computes them (scored on the whole set both agree).
- BLEU-1..4 from the summed per-image statistics exactly as pycocoevalcap's BleuScorer ("closest"
  reference length, its tiny/small guards, brevity penalty).
- METEOR per image from the one reused METEOR JVM; the cell's METEOR is the mean of the per-image scores.
  (pycocoevalcap's corpus METEOR aggregates the matching statistics first and reads a little different.)
- ROUGE-L per image (pycocoevalcap); the cell's value is their mean, as in pycocoevalcap.

CaptionScorer reuses one METEOR JVM across calls (starting it costs ~8 s), and the scorers of one process
across sweeps (`meteor.stop_idle_meteor` stops the idle one; exit does). SPICE (a corpus score only)
runs only when its Stanford CoreNLP jars are already on disk: pycocoevalcap would otherwise download them
at first use, which fails offline, so this module never lets it try.

By part: `cider` (CIDEr-D, document frequencies), `tokenizer` (PTB), `meteor` (the METEOR JVM), `spice`
(the SPICE probe), `references` (COCO references, the reference-set frequencies and their cache,
leave-one-out), `corpus` (BLEU statistics, corpus scores of per-image columns), `scorer` (`CaptionScorer`).
"""

from sweep.quality.scoring.cider import (
    CIDER_SIGMA,
    DF_CACHE_VERSION,
    DF_REFERENCE_SET,
    DF_SCORED_SUBSET,
    NGRAM_ORDER,
    DocumentFrequencies,
    cider_d,
)
from sweep.quality.scoring.corpus import METRIC_KEYS, PER_IMAGE_COLUMNS, bleu_statistics, corpus_scores
from sweep.quality.scoring.meteor import EMPTY_HYPOTHESIS, EMPTY_REFERENCE
from sweep.quality.scoring.references import (
    coco_references,
    file_sha256,
    leave_one_out,
    mean_caption_length,
    reference_set_frequencies,
)
from sweep.quality.scoring.scorer import CaptionScorer, CellScores
from sweep.quality.scoring.spice import SPICE_JARS, SPICE_LIB_DIR, spice_available
from sweep.quality.scoring.tokenizer import tokenize
from sweep.quality.statistics import BLEU_COLUMNS

__all__ = [
    "BLEU_COLUMNS", "CIDER_SIGMA", "DF_CACHE_VERSION", "DF_REFERENCE_SET", "DF_SCORED_SUBSET",
    "EMPTY_HYPOTHESIS",
    "EMPTY_REFERENCE", "METRIC_KEYS", "NGRAM_ORDER", "PER_IMAGE_COLUMNS", "SPICE_JARS", "SPICE_LIB_DIR",
    "CaptionScorer", "CellScores", "DocumentFrequencies", "bleu_statistics", "cider_d", "coco_references",
    "corpus_scores", "file_sha256", "leave_one_out", "mean_caption_length", "reference_set_frequencies",
    "spice_available", "tokenize",
]

"""CIDEr-D with pycocoevalcap's definition (1- to 4-grams, clipped tf-idf cosine, Gaussian length penalty
with sigma 6, times 10), its document frequencies from a given reference corpus (`DocumentFrequencies`)."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

NGRAM_ORDER = 4  # CIDEr-D and BLEU both use 1- to 4-grams
CIDER_SIGMA = 6.0  # CIDEr-D's length penalty: exp(-delta^2 / (2 sigma^2))

#: where CIDEr's document frequencies come from (grid `scoring.document_frequencies`)
DF_REFERENCE_SET = "reference_set"  # every reference of the dataset's captions file
DF_SCORED_SUBSET = "scored_subset"  # the scored images' references (pycocoevalcap's classic behaviour)
DF_CACHE_VERSION = 1

def ngrams(text: str, n: int = NGRAM_ORDER) -> list[Counter[str]]:
    """Counts of the 1..n-grams of a tokenized caption (words joined by one space), one Counter per order.
    Words are what str.split() gives, as in pycocoevalcap's precook."""
    words = text.split()
    return [Counter(" ".join(words[i:i + k]) for i in range(len(words) - k + 1)) for k in range(1, n + 1)]


@dataclass(frozen=True)
class DocumentFrequencies:
    """CIDEr's document frequencies: in how many images' reference sets each 1..4-gram occurs.

    `counts` maps an n-gram (tokenized words joined by one space) to that number; `n_images` is the size
    of the corpus (CIDEr's idf is log(n_images) - log(max(1, count))). `source` says where they came from;
    `key` identifies the corpus (the captions file's sha256 for the whole reference set).
    """

    counts: Mapping[str, int]
    n_images: int
    n_references: int
    source: str = ""
    key: str = ""

    @classmethod
    def from_tokenized(cls, references: Iterable[Sequence[str]], source: str = "",
                       key: str = "") -> DocumentFrequencies:
        """From tokenized references, one sequence of captions per image."""
        return cls._from_grams(([ngrams(r) for r in refs] for refs in references), source, key)

    @classmethod
    def _from_grams(cls, references: Iterable[list[list[Counter[str]]]], source: str = "",
                    key: str = "") -> DocumentFrequencies:
        counts: Counter[str] = Counter()
        n_images = n_references = 0
        for refs in references:
            seen: set[str] = set()
            for grams in refs:
                for order in grams:
                    seen.update(order)
            counts.update(seen)  # once per image, however many of its references hold the n-gram
            n_images += 1
            n_references += len(refs)
        if n_images == 0:
            raise ValueError("document frequencies need at least one image with references")
        return cls(dict(counts), n_images, n_references, source, key)

    def describe(self) -> str:
        return f"{self.n_references:,} references of {self.n_images:,} images" + (
            f" ({self.source})" if self.source else "")

    def to_bytes(self) -> bytes:
        payload = {"version": DF_CACHE_VERSION, "ngram_order": NGRAM_ORDER, "n_images": self.n_images,
                   "n_references": self.n_references, "source": self.source, "key": self.key,
                   "counts": self.counts}
        return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> DocumentFrequencies:
        payload = json.loads(gzip.decompress(data))
        if payload.get("version") != DF_CACHE_VERSION or payload.get("ngram_order") != NGRAM_ORDER:
            raise ValueError("document frequency cache of another format")
        return cls(dict(payload["counts"]), int(payload["n_images"]), int(payload["n_references"]),
                   str(payload["source"]), str(payload["key"]))



def _tfidf(grams: list[Counter[str]], counts: Mapping[str, int], log_n: float,
           idf: dict[str, float]) -> tuple[list[dict[str, float]], list[float]]:
    """Per order: the caption's tf-idf vector and its Euclidean norm."""
    vectors: list[dict[str, float]] = []
    norms: list[float] = []
    for order in grams:
        vector = {}
        for gram, tf in order.items():
            weight = idf.get(gram)
            if weight is None:  # an n-gram no reference set holds gets the largest idf, log(n_images)
                weight = idf[gram] = log_n - math.log(max(1.0, float(counts.get(gram, 0))))
            vector[gram] = tf * weight
        vectors.append(vector)
        norms.append(math.sqrt(sum(w * w for w in vector.values())))
    return vectors, norms


def cider_d_of_grams(hypotheses: Sequence[list[Counter[str]]],
                     references: Sequence[Sequence[list[Counter[str]]]], df: DocumentFrequencies,
                     sigma: float = CIDER_SIGMA) -> list[float]:
    """`cider_d` of captions already counted into n-grams (`ngrams`)."""
    log_n = math.log(float(df.n_images))
    idf: dict[str, float] = {}
    scores = []
    for hyp, refs in zip(hypotheses, references, strict=True):
        h_vec, h_norm = _tfidf(hyp, df.counts, log_n, idf)
        # pycocoevalcap's CIDEr-D measures a caption's length in bigrams (its `n == 1` is the 2-gram
        # index): the same count here, so the length penalty (and the score) is the same.
        h_len = sum(hyp[1].values()) if len(hyp) > 1 else 0
        total = 0.0
        for ref in refs:
            r_vec, r_norm = _tfidf(ref, df.counts, log_n, idf)
            r_len = sum(ref[1].values()) if len(ref) > 1 else 0
            penalty = math.exp(-float(h_len - r_len) ** 2 / (2 * sigma ** 2))
            for order, (hv, rv) in enumerate(zip(h_vec, r_vec, strict=True)):
                # clipped: a hypothesis n-gram counts at most as much as the reference holds it
                dot = sum(min(w, rv.get(gram, 0.0)) * rv.get(gram, 0.0) for gram, w in hv.items())
                if h_norm[order] != 0 and r_norm[order] != 0:
                    dot /= h_norm[order] * r_norm[order]
                total += dot * penalty
        scores.append(total / len(hyp) / len(refs) * 10.0)
    return scores


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
            df: DocumentFrequencies | None = None, sigma: float = CIDER_SIGMA) -> list[float]:
    """Per-image CIDEr-D of tokenized captions: mean over 1..4-grams of the clipped tf-idf cosine with
    each reference, times a Gaussian length penalty, averaged over the references, times 10.
    `df`: the document frequencies; None takes them from these references (pycocoevalcap's Cider)."""
    hyp = [ngrams(h) for h in hypotheses]
    refs = [[ngrams(r) for r in rs] for rs in references]
    return cider_d_of_grams(hyp, refs, df if df is not None else DocumentFrequencies._from_grams(refs), sigma)


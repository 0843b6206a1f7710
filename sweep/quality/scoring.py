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

CaptionScorer reuses one METEOR JVM across calls (starting it costs ~8 s). SPICE (a corpus score only)
runs only when its Stanford CoreNLP jars are already on disk: pycocoevalcap would otherwise download them
at first use, which fails offline, so this module never lets it try.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models as _spice_models
from pycocoevalcap.tokenizer import ptbtokenizer as _ptb

from sweep.quality.statistics import BLEU_COLUMNS, corpus_bleu
from sweep.results.store import atomic_write_bytes
from sweep.results.tables import CORPUS_QUALITY

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)

METRIC_KEYS = CORPUS_QUALITY  # declared with the results table

NGRAM_ORDER = 4  # CIDEr-D and BLEU both use 1- to 4-grams
CIDER_SIGMA = 6.0  # CIDEr-D's length penalty: exp(-delta^2 / (2 sigma^2))
#: the per-image columns a scored cell's caption table carries (NaN on rows that were not scored)
PER_IMAGE_COLUMNS = ("cider", "meteor", "rouge_l", *BLEU_COLUMNS)

#: where CIDEr's document frequencies come from (grid `scoring.document_frequencies`)
DF_REFERENCE_SET = "reference_set"  # every reference of the dataset's captions file
DF_SCORED_SUBSET = "scored_subset"  # the scored images' references (pycocoevalcap's classic behaviour)
DF_CACHE_VERSION = 1

# Tokens matching no real word (nor each other): empty captions still score METEOR 0 (see _meteor_inputs).
EMPTY_HYPOTHESIS = "emptyhypothesis"
EMPTY_REFERENCE = "emptyreference"

SPICE_LIB_DIR = Path(_spice_models.SPICEDIR) / _spice_models.SPICELIB
SPICE_JARS = (f"{_spice_models.JAR}.jar", f"{_spice_models.JAR}-models.jar")


def _spice_missing_reason(lib_dir: Path | None = None) -> str | None:
    lib = SPICE_LIB_DIR if lib_dir is None else Path(lib_dir)
    missing = [jar for jar in SPICE_JARS if not (lib / jar).is_file()]
    if missing:
        return f"Stanford CoreNLP jars not found in {lib}: {', '.join(missing)} (offline: never downloaded)"
    if shutil.which("java") is None:
        return "no java on PATH"
    return None


def spice_available(lib_dir: Path | None = None) -> bool:
    """True when SPICE's CoreNLP jars are already present (checks files only, downloads nothing)."""
    return _spice_missing_reason(lib_dir) is None


def leave_one_out(references: Mapping[K, list[str]]) -> tuple[dict[K, str], dict[K, list[str]]]:
    """Per image, the first reference becomes the prediction and the others its references."""
    predictions: dict[K, str] = {}
    rest: dict[K, list[str]] = {}
    for image_id, refs in references.items():
        if isinstance(refs, str) or len(refs) < 2:
            raise ValueError(f"leave_one_out needs >= 2 references per image; image {image_id!r} has fewer")
        predictions[image_id] = refs[0]
        rest[image_id] = list(refs[1:])
    return predictions, rest


def mean_caption_length(captions: Iterable[str]) -> float:
    """Mean number of whitespace-separated words; NaN for no captions."""
    lengths = [len(c.split()) for c in captions]
    return sum(lengths) / len(lengths) if lengths else math.nan


def _one_line(text: str) -> str:
    # PTBTokenizer runs with -preserveLines and zips its output lines back onto ids: any line break
    # inside a caption (including \r, \u2028, \x85, which Java also splits on) would shift every
    # later caption onto the wrong image. str.split() breaks on all of those.
    return " ".join(text.split())


def _meteor_text(text: str) -> str:
    # " ||| " is the field separator of METEOR's stdio protocol; pycocoevalcap strips it from the
    # hypothesis only, and a stray one in a reference desynchronises the request/answer stream.
    return " ".join(text.replace("|", " ").split())


def _ngrams(text: str, n: int = NGRAM_ORDER) -> list[Counter[str]]:
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
        return cls._from_grams(([_ngrams(r) for r in refs] for refs in references), source, key)

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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def coco_references(data: Mapping[str, Any]) -> dict[int, list[str]]:
    """Image id -> its reference captions, read from a COCO captions json as `sweep.data.sources` reads
    them."""
    refs: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        refs.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
    return refs


def reference_set_frequencies(captions: Path, cache_dir: Path | None = None) -> DocumentFrequencies:
    """Document frequencies from every reference of a COCO captions file (all its images).

    Tokenized once (PTBTokenizer, one JVM start) and cached under `cache_dir`, keyed by the file's
    sha256: a later call, in this sweep or the next, reads the cache instead.
    """
    captions = Path(captions)
    digest = file_sha256(captions)
    cache = Path(cache_dir) / f"cider-df-{digest[:32]}-v{DF_CACHE_VERSION}.json.gz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            cached = DocumentFrequencies.from_bytes(cache.read_bytes())
            if cached.key == digest:
                return cached
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged or outdated cache is recomputed and replaced
    refs = coco_references(json.loads(captions.read_bytes()))
    tokenized = tokenize({image_id: caps for image_id, caps in refs.items() if caps})
    source = f"{captions.name}, sha256 {digest[:12]}"
    df = DocumentFrequencies.from_tokenized(tokenized.values(), source=source, key=digest)
    if cache is not None:
        atomic_write_bytes(cache, df.to_bytes())
    return df


def tokenize(captions: Mapping[K, Sequence[str]]) -> dict[K, list[str]]:
    """PTB-tokenize (one JVM start) each key's captions as the COCO protocol does: lower case,
    punctuation removed. Keys can be anything hashable; the output keeps their order and alignment."""
    keys = list(captions)
    # Positional keys for pycocoevalcap (whatever the callers' key types)
    raw = {i: [{"caption": _one_line(c)} for c in captions[key]] for i, key in enumerate(keys)}
    tok = _ptb_tokenize(raw)
    for i, caps in raw.items():
        if len(tok.get(i, ())) != len(caps):
            raise RuntimeError(f"PTBTokenizer returned misaligned output for {keys[i]!r}")
    return {key: list(tok.get(i, [])) for i, key in enumerate(keys)}


def _ptb_tokenize(captions_for_image: dict[int, list[dict[str, str]]]) -> dict[int, list[str]]:
    """pycocoevalcap's `PTBTokenizer.tokenize`, the same command and the same output, but with the JVM's
    stderr captured: Stanford's tokenizer prints "PTBTokenizer tokenized N tokens at ..." there on every
    call (once per scored cell), which would land between the sweep's progress lines. It goes to the
    sweep's log instead (`sweep.logs`); a failing tokenizer raises with it."""
    image_ids = [k for k, v in captions_for_image.items() for _ in range(len(v))]
    sentences = "\n".join(c["caption"].replace("\n", " ") for v in captions_for_image.values() for c in v)
    jar_dir = os.path.dirname(os.path.abspath(_ptb.__file__))
    # the same temp file in the jar's folder as pycocoevalcap (the JVM reads it by relative name)
    with tempfile.NamedTemporaryFile(delete=False, dir=jar_dir) as tmp:
        tmp.write(sentences.encode())
    try:
        cmd = ["java", "-cp", _ptb.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", os.path.basename(tmp.name)]
        proc = subprocess.run(cmd, cwd=jar_dir, capture_output=True, check=False)
    finally:
        os.remove(tmp.name)
    stderr = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"PTBTokenizer (java) exited {proc.returncode}: {stderr[-2000:]}")
    if stderr:
        log.info("%s", stderr)
    out: dict[int, list[str]] = {}
    for k, line in zip(image_ids, proc.stdout.decode().split("\n"), strict=False):
        words = [w for w in line.rstrip().split(" ") if w not in _ptb.PUNCTUATIONS]
        out.setdefault(k, []).append(" ".join(words))
    return out


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


def _cider_d(hypotheses: Sequence[list[Counter[str]]], references: Sequence[Sequence[list[Counter[str]]]],
             df: DocumentFrequencies, sigma: float = CIDER_SIGMA) -> list[float]:
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
    hyp = [_ngrams(h) for h in hypotheses]
    refs = [[_ngrams(r) for r in rs] for rs in references]
    return _cider_d(hyp, refs, df if df is not None else DocumentFrequencies._from_grams(refs), sigma)


def _bleu_statistics(hyp: list[Counter[str]], refs: Sequence[list[Counter[str]]]) -> list[float]:
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
    values = _bleu_statistics(_ngrams(hypothesis), [_ngrams(r) for r in references])
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

    Holds one METEOR process, started at the first score and reused until close(); a later score
    starts a new one. Calls are serialised by a lock, so sharing one scorer between threads is safe
    but not parallel.
    """

    def __init__(self, spice: bool = True, meteor_timeout_s: float = 600.0) -> None:
        self.use_spice = spice
        self.meteor_timeout_s = meteor_timeout_s
        self.notes: list[str] = []
        self.call_notes: list[str] = []  # the notes of the last call about its predictions alone
        self._meteor: Meteor | None = None
        self._lock = threading.RLock()

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the METEOR JVM if one is running."""
        with self._lock:
            meteor, self._meteor = self._meteor, None
            if meteor is not None:
                _stop_meteor(meteor)

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
        if not ids:
            raise ValueError("no predictions to score")
        for image_id in ids:
            if image_id not in references:
                raise ValueError(f"no references for image id {image_id!r}")
            refs = references[image_id]
            if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
                raise TypeError(f"references[{image_id!r}] must be a list of str")
            if len(refs) == 0:
                raise ValueError(f"empty reference list for image id {image_id!r}")
            if not isinstance(predictions[image_id], str):
                raise TypeError(f"prediction for image id {image_id!r} is not a str")

        with self._lock:
            self.notes = []
            self.call_notes = []
            # Positional keys: pycocoevalcap (SPICE) sorts ids, which fails on mixed str/int ids.
            # One tokenizer call (one JVM start) for predictions and references together.
            tok = tokenize({**{("res", i): [predictions[image_id]] for i, image_id in enumerate(ids)},
                            **{("gts", i): list(references[image_id]) for i, image_id in enumerate(ids)}})
            res = {i: tok[("res", i)] for i in range(len(ids))}
            gts = {i: tok[("gts", i)] for i in range(len(ids))}

            hyp_grams = [_ngrams(res[i][0]) for i in range(len(ids))]
            ref_grams = [[_ngrams(r) for r in gts[i]] for i in range(len(ids))]
            if document_frequencies is None:
                df = DocumentFrequencies._from_grams(ref_grams, source=DF_SCORED_SUBSET)
                df_used = f"{DF_SCORED_SUBSET}: {df.describe()}"
            else:
                df = document_frequencies
                df_used = df.describe()
            columns: dict[str, list[float]] = {"cider": _cider_d(hyp_grams, ref_grams, df)}
            columns["meteor"] = self._meteor_scores(gts, res)[1]
            columns["rouge_l"] = [float(v) for v in Rouge().compute_score(gts, res)[1]]
            stats = [_bleu_statistics(h, r) for h, r in zip(hyp_grams, ref_grams, strict=True)]
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

    def _meteor_scores(self, gts: dict[int, list[str]],
                       res: dict[int, list[str]]) -> tuple[float, list[float]]:
        """(corpus METEOR, per-image METEOR in the order of `res`) from one METEOR EVAL request."""
        m_gts, m_res = _meteor_inputs(gts, res)
        if self._meteor is not None and self._meteor.meteor_p.poll() is not None:
            _stop_meteor(self._meteor)  # the JVM died between calls (e.g. killed): start afresh
            self._meteor = None
        if self._meteor is None:
            self._meteor = _start_meteor()
        meteor = self._meteor
        # A METEOR answer that never comes would block readline() forever: kill the JVM after a
        # deadline so the read returns EOF and this call fails instead of hanging the sweep.
        watchdog = threading.Timer(self.meteor_timeout_s, meteor.meteor_p.kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            corpus, segments = meteor.compute_score(m_gts, m_res)
            scores = [float(s) for s in segments]
        except Exception as err:
            self._meteor = None
            _stop_meteor(meteor)
            raise RuntimeError(f"METEOR failed (process restarted on next call): {err!r}") from err
        finally:
            watchdog.cancel()
        if len(scores) != len(res):
            raise RuntimeError(f"METEOR returned {len(scores)} segment scores for {len(res)} images")
        return float(corpus), scores

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
            out["meteor"] = self._meteor_scores(gts, res)[0]
            out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        return out

    def _maybe_spice(
        self, gts: dict[int, list[str]], res: dict[int, list[str]], out: dict[str, float]
    ) -> None:
        if not self.use_spice:
            self.notes.append("SPICE skipped: disabled (spice=False)")
            return
        reason = _spice_missing_reason()
        if reason is not None:
            self.notes.append(f"SPICE skipped: {reason}")
            return
        from pycocoevalcap.spice.spice import Spice  # only imported once we know the jars exist

        try:
            out["spice"] = float(Spice().compute_score(gts, res)[0])
        except Exception as err:  # SPICE is optional: a failure drops the metric, never the whole score
            self.notes.append(f"SPICE skipped: it failed to run ({err!r})")


def _meteor_inputs(
    gts: dict[int, list[str]], res: dict[int, list[str]]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    # An empty hypothesis or reference turns a "SCORE ||| ... ||| hyp" line into one with an empty
    # field, which some METEOR builds answer with a line that is not a number (or not at all). A
    # placeholder that matches nothing keeps the protocol well-formed and gives the same score, 0.
    return (
        {i: [_meteor_text(r) or EMPTY_REFERENCE for r in refs] for i, refs in gts.items()},
        {i: [_meteor_text(h) or EMPTY_HYPOTHESIS for h in hyps] for i, hyps in res.items()},
    )


def _start_meteor() -> Meteor:
    meteor = Meteor()
    # pycocoevalcap pipes the JVM's stderr and never reads it: once that pipe fills, the JVM blocks
    # and so do we. Drain it in the background.
    stderr = meteor.meteor_p.stderr
    if stderr is not None:
        threading.Thread(target=_drain, args=(stderr,), daemon=True, name="meteor-stderr").start()
    return meteor


def _drain(stream: Any) -> None:
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


def _stop_meteor(meteor: Meteor) -> None:
    # Meteor.__del__ takes meteor.lock; a call that died mid-way leaves it held, and the garbage
    # collector would then deadlock on it.
    if meteor.lock.locked():
        meteor.lock.release()
    proc = meteor.meteor_p
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    proc.kill()
    proc.wait()

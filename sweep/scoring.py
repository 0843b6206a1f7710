"""Caption quality metrics (COCO protocol) on top of pycocoevalcap.

CaptionScorer reuses one METEOR JVM across calls (starting it costs ~8 s). SPICE runs only when its
Stanford CoreNLP jars are already on disk: pycocoevalcap would otherwise download them at first use,
which fails offline, so this module never lets it try.
"""

from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models as _spice_models
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

K = TypeVar("K", bound=Hashable)

METRIC_KEYS = ("cider", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l")

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


class CaptionScorer:
    """Scores predicted captions against references: CIDEr, BLEU-1..4, METEOR, ROUGE-L (+ SPICE if present).

    Holds one METEOR process, started at the first score() and reused until close(); a later score()
    starts a new one. Calls are serialised by a lock, so sharing one scorer between threads is safe
    but not parallel.
    """

    def __init__(self, spice: bool = True, meteor_timeout_s: float = 600.0) -> None:
        self.use_spice = spice
        self.meteor_timeout_s = meteor_timeout_s
        self.notes: list[str] = []
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

    def score(self, predictions: Mapping[Any, str], references: Mapping[Any, list[str]]) -> dict[str, float]:
        """Corpus scores of `predictions` (id -> caption) against `references` (id -> captions).

        Only ids in `predictions` are scored. CIDEr's idf comes from the scored references, so it is
        only meaningful over many images (it is 0 for a single one).
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
            # Positional keys: pycocoevalcap (SPICE) sorts ids, which fails on mixed str/int ids.
            raw: dict[tuple[str, int], list[dict[str, str]]] = {}
            for i, image_id in enumerate(ids):
                raw[("res", i)] = [{"caption": _one_line(predictions[image_id])}]
                raw[("gts", i)] = [{"caption": _one_line(r)} for r in references[image_id]]
            # One tokenizer call (one JVM start) for predictions and references together.
            tok = PTBTokenizer().tokenize(raw)
            for key, captions in raw.items():
                if len(tok.get(key, ())) != len(captions):
                    raise RuntimeError(f"PTBTokenizer returned misaligned output for {key!r}")
            res = {i: tok[("res", i)] for i in range(len(ids))}
            gts = {i: tok[("gts", i)] for i in range(len(ids))}

            out: dict[str, float] = {}
            out["cider"] = float(Cider().compute_score(gts, res)[0])
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            for n, value in enumerate(bleu, start=1):
                out[f"bleu_{n}"] = float(value)
            out["meteor"] = self._meteor_score(gts, res)
            out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])

            n_empty = sum(1 for caps in res.values() if not caps[0].strip())
            if n_empty:
                self.notes.append(f"{n_empty} of {len(ids)} predictions empty after tokenization (scored 0)")
            self._maybe_spice(gts, res, out)
            return out

    def _meteor_score(self, gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
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
            return float(meteor.compute_score(m_gts, m_res)[0])
        except Exception as err:
            self._meteor = None
            _stop_meteor(meteor)
            raise RuntimeError(f"METEOR failed (process restarted on next call): {err!r}") from err
        finally:
            watchdog.cancel()

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

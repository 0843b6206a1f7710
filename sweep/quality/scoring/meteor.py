"""METEOR per image from one reused METEOR JVM (starting it costs ~8 s): pycocoevalcap's `Meteor`, kept
well-formed (empty captions, stray field separators), drained, and killed after a deadline.

A closed `MeteorJVM` leaves its live JVM idle for the next one of the same process (stopped at exit,
or by `stop_idle_meteor`): a process that runs several sweeps (a notebook, the benchmarks, the test suite)
starts METEOR once, not once per sweep (each start is about 10 CPU-seconds: its paraphrase tables)."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from pycocoevalcap.meteor.meteor import Meteor

# Tokens matching no real word (nor each other): empty captions still score METEOR 0 (see _meteor_inputs).
EMPTY_HYPOTHESIS = "emptyhypothesis"
EMPTY_REFERENCE = "emptyreference"


class MeteorJVM:
    """One METEOR process, started at the first request and reused until `close()`; one that died between
    requests (killed) is started afresh. Not thread-safe: the caller serialises requests."""

    def __init__(self, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s
        self._meteor: Meteor | None = None

    def close(self) -> None:
        """Gives a running JVM back as this process's idle one (or stops it if there is one already)."""
        meteor, self._meteor = self._meteor, None
        if meteor is not None and not _park(meteor):
            _stop_meteor(meteor)

    def scores(self, gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float, list[float]]:
        """(corpus METEOR, per-image METEOR in the order of `res`) from one METEOR EVAL request."""
        m_gts, m_res = _meteor_inputs(gts, res)
        if self._meteor is not None and self._meteor.meteor_p.poll() is not None:
            _stop_meteor(self._meteor)  # the JVM died between calls (e.g. killed): start afresh
            self._meteor = None
        if self._meteor is None:
            self._meteor = _take_idle() or _start_meteor()
        meteor = self._meteor
        # A METEOR answer that never comes would block readline() forever: kill the JVM after a
        # deadline so the read returns EOF and this call fails instead of hanging the sweep.
        watchdog = threading.Timer(self.timeout_s, meteor.meteor_p.kill)
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


def _meteor_text(text: str) -> str:
    # " ||| " is the field separator of METEOR's stdio protocol; pycocoevalcap strips it from the
    # hypothesis only, and a stray one in a reference desynchronises the request/answer stream.
    return " ".join(text.replace("|", " ").split())


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


#: at most one idle METEOR JVM per process, handed to the next MeteorJVM that needs one
_idle: list[Meteor] = []
_idle_lock = threading.Lock()


def _park(meteor: Meteor) -> bool:
    """Keeps a healthy JVM (alive, no request half-done) as the idle one; False: the caller stops it."""
    with _idle_lock:
        if _idle or meteor.meteor_p.poll() is not None or meteor.lock.locked():
            return False
        _idle.append(meteor)
        return True


def _take_idle() -> Meteor | None:
    with _idle_lock:
        meteor = _idle.pop() if _idle else None
    if meteor is not None and meteor.meteor_p.poll() is not None:  # died while idle (killed)
        _stop_meteor(meteor)
        return None
    return meteor


def stop_idle_meteor() -> None:
    """Stops this process's idle METEOR JVM, if any (at exit; or to give its memory back earlier)."""
    with _idle_lock:
        idle = list(_idle)
        _idle.clear()
    for meteor in idle:
        _stop_meteor(meteor)


atexit.register(stop_idle_meteor)


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

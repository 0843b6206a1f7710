"""PTB tokenization of captions as the COCO protocol does it (pycocoevalcap's Stanford PTBTokenizer, one
JVM start per call): lower case, punctuation removed, the JVM's chatter routed to the sweep's log."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from pycocoevalcap.tokenizer import ptbtokenizer as _ptb

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)


def _one_line(text: str) -> str:
    # PTBTokenizer runs with -preserveLines and zips its output lines back onto ids: any line break
    # inside a caption (including \r, \u2028, \x85, which Java also splits on) would shift every
    # later caption onto the wrong image. str.split() breaks on all of those.
    return " ".join(text.split())


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

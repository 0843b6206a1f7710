"""Scoring a finished cell's caption table the way this sweep scores (CIDEr's document frequencies, the
references), and reading back stored scores only when they were made that way."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from sweep.execute.phases import PhaseTimer
from sweep.grid.cells import Cell
from sweep.quality.scoring import (
    DF_REFERENCE_SET,
    DF_SCORED_SUBSET,
    PER_IMAGE_COLUMNS,
    CaptionScorer,
    DocumentFrequencies,
    file_sha256,
    mean_caption_length,
    reference_set_frequencies,
)
from sweep.results.store import ResultStore, prompt_sha256
from sweep.results.tables import CORPUS_QUALITY

# scores.json keeps how the cell was scored beside its scores: read back only when it still matches (the
# document frequencies, the reference set file, and the references of the scored samples)
SCORING_STAMP = "scoring"


def references_fingerprint(references: dict[str, list[str]]) -> str:
    """sha256 over the sorted (sample id, references): changes when any sample's references change."""
    h = hashlib.sha256()
    for sample_id in sorted(references):
        h.update(json.dumps([sample_id, list(references[sample_id])]).encode())
        h.update(b"\n")
    return h.hexdigest()



class CellScoring:
    """Scores cells against `references` (sample id -> captions) with `scorer`; the notes it makes (which
    document frequencies, what the scorer said of a cell) go to `notes`, the recorder's.

    `document_frequencies` (grid `scoring.document_frequencies`): "reference_set" takes CIDEr's document
    frequencies from every reference of `reference_captions` (the dataset's COCO captions file, cached
    under `<output_dir>/df-cache`); "scored_subset" from the scored samples' references (pycocoevalcap's
    classic behaviour). Without a captions file (video datasets) reference_set falls back to
    scored_subset, with a note."""

    def __init__(self, references: dict[str, list[str]], store: ResultStore, scorer: CaptionScorer,
                 timer: PhaseTimer, notes: list[str], document_frequencies: str = DF_REFERENCE_SET,
                 reference_captions: Path | None = None):
        self.references = references
        self.store = store
        self.scorer = scorer
        self.timer = timer
        self.notes = notes
        if document_frequencies not in (DF_REFERENCE_SET, DF_SCORED_SUBSET):
            raise ValueError(f"document_frequencies must be {DF_REFERENCE_SET!r} or {DF_SCORED_SUBSET!r}, "
                             f"got {document_frequencies!r}")
        self.reference_captions = Path(reference_captions) if reference_captions is not None else None
        self.df_mode = document_frequencies
        if document_frequencies == DF_REFERENCE_SET and self.reference_captions is None:
            self.df_mode = DF_SCORED_SUBSET
            self.notes.append("CIDEr document frequencies come from the scored samples' references "
                              "(scored_subset): the dataset has no captions file to take the whole reference "
                              "set from, so CIDEr depends on which samples are scored")
        self._df: DocumentFrequencies | None = None
        self._stamp: dict[str, str] | None = None

    def document_frequencies(self) -> DocumentFrequencies | None:
        """CIDEr's document frequencies for every cell of the sweep (None: from the scored references).
        Computed (or read from df-cache) at the first cell scored, so a re-run that reads every cell's
        scores back never tokenizes."""
        if self.df_mode != DF_REFERENCE_SET or self.reference_captions is None:
            return None
        if self._df is None:
            self._df = reference_set_frequencies(self.reference_captions, self.store.root / "df-cache",
                                                 progress=lambda line: print(line, flush=True))
            self.notes.append("CIDEr document frequencies from the whole reference set: "
                              f"{self._df.describe()}")
        return self._df

    def scoring_stamp(self) -> dict[str, str]:
        """How this sweep scores a cell; stored scores made another way are recomputed."""
        if self._stamp is None:
            captions = self.reference_captions
            key = file_sha256(captions) if self.df_mode == DF_REFERENCE_SET and captions is not None else ""
            self._stamp = {"cider_document_frequencies": self.df_mode, "reference_set_sha256": key,
                           "references_sha256": references_fingerprint(self.references)}
        return self._stamp

    def score(self, table: pd.DataFrame, label: str = "") -> tuple[pd.DataFrame, dict[str, float]]:
        """Scores a finished cell: (its caption table with the per-image columns PER_IMAGE_COLUMNS, NaN on
        rows not scored, i.e. errors and samples without references; the cell's scores). The scorer's
        notes (e.g. predictions empty after tokenization) are kept naming the cell, `label`."""
        table = table.drop(columns=[c for c in PER_IMAGE_COLUMNS if c in table])
        ok = table[table["error"] == ""]
        # only samples with human references can be scored (video scenes often have none)
        ok = ok[ok["sample_id"].map(lambda sid: bool(self.references.get(sid)))]
        if ok.empty:
            for column in PER_IMAGE_COLUMNS:
                table[column] = math.nan
            return table, dict.fromkeys(CORPUS_QUALITY, math.nan)
        predictions = dict(zip(ok["sample_id"], ok["caption"], strict=True))
        with self.timer.phase("scoring"):
            result = self.scorer.score_images(predictions, {sid: self.references[sid] for sid in predictions},
                                              self.document_frequencies())
        about_cell = set(getattr(self.scorer, "call_notes", ()))
        for note in getattr(self.scorer, "notes", []):
            note = f"{label}: {note}" if label and note in about_cell else note
            if note not in self.notes:
                self.notes.append(note)
        for column in PER_IMAGE_COLUMNS:
            table[column] = table["sample_id"].map(result.per_image[column]).astype(float)
        scores = dict(result.corpus)
        scores["mean_caption_words"] = mean_caption_length(ok["caption"])
        scores["n_scored"] = float(len(ok))
        return table, scores

    def with_row_context(self, table: pd.DataFrame, cell: Cell) -> tuple[pd.DataFrame, bool]:
        """The caption table with what a user needs to check a row on its own: `references` (the
        captions it is scored against) and `prompt_sha256` (of the prompt as the model saw it, stored
        once in cell.json as `rendered_prompt`; of the grid's prompt when the host could not render it).
        `generated_tokens` is already there. (table, whether a column changed)."""
        record = self.store.read_cell(cell.cell_id)
        digest = record.get("prompt_sha256") or prompt_sha256(cell.prompt)
        references = [list(self.references.get(sid, ())) for sid in table["sample_id"]]
        same = ("references" in table and "prompt_sha256" in table
                and (table["prompt_sha256"] == digest).all()
                and [list(r) for r in table["references"]] == references)
        if same:
            return table, False
        table = table.copy()
        table["references"] = references
        table["prompt_sha256"] = digest
        return table, True

    def stored_scores(self, cell_id: str, table: pd.DataFrame) -> dict[str, float] | None:
        """The stored scores of a cell, if scored since its table was written, the way this sweep scores,
        and with the per-image columns in its table."""
        stored = self.store.read_scores(cell_id)
        if stored is None or stored.pop(SCORING_STAMP, None) != self.scoring_stamp():
            return None
        if any(column not in table for column in PER_IMAGE_COLUMNS):
            return None
        return stored

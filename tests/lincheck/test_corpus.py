"""Every history of the shared Porcupine corpus gets its expected verdict (skips without it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lincheck.formats import read_history
from lincheck.models import get_model
from lincheck.search import check

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "porcupine"
MANIFEST = CORPUS / "manifest.json"


def _entries() -> list[dict[str, Any]]:
    if not MANIFEST.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return entries


ENTRIES = _entries()


@pytest.mark.skipif(not ENTRIES, reason=f"corpus absent: {MANIFEST}")
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_corpus_file_gets_its_expected_verdict(entry: dict[str, Any]) -> None:
    history = read_history(CORPUS / entry["file"], entry["format"])
    result = check(history, get_model(entry["model"], entry["initial"]), timeout=60)
    assert result.verdict == entry["expected"], result.reason


@pytest.mark.skipif(not ENTRIES, reason=f"corpus absent: {MANIFEST}")
def test_corpus_formats_are_detected_automatically() -> None:
    for entry in ENTRIES:
        history = read_history(CORPUS / entry["file"])
        explicit = read_history(CORPUS / entry["file"], entry["format"])
        assert history.operations == explicit.operations, entry["file"]


@pytest.mark.skipif(not ENTRIES, reason=f"corpus absent: {MANIFEST}")
def test_illegal_corpus_file_reports_the_operation_that_could_not_be_placed() -> None:
    entry = next(e for e in ENTRIES if e["expected"] == "illegal")
    history = read_history(CORPUS / entry["file"], entry["format"])
    result = check(history, get_model(entry["model"], entry["initial"]))
    failure = result.first_failure()
    assert failure is not None and failure.unplaced
    ids = {op.id for op in history.operations}
    assert failure.unplaced[0] in ids
    assert failure.unplaced[0] not in failure.longest
    assert len(failure.states) == len(failure.longest)

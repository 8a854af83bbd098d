"""PalmIndex: shortlist + exact re-score, ids never leak, removal, concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from identity.errors import DuplicateTemplateError, TemplateFormatError
from identity.index import PalmIndex
from identity.template import Template

GRID = (32, 32)


def _random(seed: int, grid: tuple[int, int] = GRID) -> Template:
    rng = np.random.default_rng(seed)
    return Template.from_bits(rng.random((3, *grid)) < 0.5, np.ones(grid, dtype=bool))


def _noisy(t: Template, seed: int, flip: float = 0.1) -> Template:
    rng = np.random.default_rng(seed)
    code = t.code_bits() ^ (rng.random((3, *GRID)) < flip)
    return Template.from_bits(code, t.mask_bits())


@pytest.fixture
def index() -> PalmIndex:
    idx = PalmIndex(GRID)
    for subject in range(20):
        for capture in range(2):
            base = _random(subject)
            idx.add(f"t-{subject}-{capture}", f"s-{subject}", _noisy(base, 100 * subject + capture))
    return idx


def test_search_finds_the_right_subject_first(index: PalmIndex) -> None:
    found = index.search(_noisy(_random(7), 999), shortlist=10)
    assert found[0].subject_id == "s-7"
    assert found[0].template_id in {"t-7-0", "t-7-1"}
    assert found[0].score > 0.5
    assert all(c.score < 0.2 for c in found[1:])


def test_one_candidate_per_subject_sorted_by_score(index: PalmIndex) -> None:
    found = index.search(_random(3), shortlist=40)
    subjects = [c.subject_id for c in found]
    assert len(subjects) == len(set(subjects)) == 20
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True)


def test_faiss_ids_and_padding_never_leak(index: PalmIndex) -> None:
    found = index.search(_random(1), shortlist=1000)  # k > ntotal: FAISS pads with -1
    assert len(found) == 20
    for c in found:
        assert c.template_id.startswith("t-") and c.subject_id.startswith("s-")


def test_k_larger_than_ntotal_and_empty_index() -> None:
    idx = PalmIndex(GRID)
    assert idx.search(_random(1), shortlist=5) == []
    idx.add("only", "s", _random(1))
    found = idx.search(_random(1), shortlist=5)
    assert [(c.template_id, c.subject_id, c.score) for c in found] == [("only", "s", 1.0)]


def test_duplicate_template_id_refused(index: PalmIndex) -> None:
    with pytest.raises(DuplicateTemplateError):
        index.add("t-0-0", "s-other", _random(50))
    assert len(index) == 40


def test_remove_subject(index: PalmIndex) -> None:
    assert index.remove_subject("s-7") == 2
    assert index.remove_subject("s-7") == 0
    assert len(index) == 38
    assert "t-7-0" not in index
    assert "s-7" not in index.subject_ids()
    found = index.search(_noisy(_random(7), 999), shortlist=100)
    assert "s-7" not in {c.subject_id for c in found}
    index.add("t-7-0", "s-7", _random(7))  # the id is free again
    assert index.search(_random(7), shortlist=3)[0].subject_id == "s-7"


def test_grid_mismatch_refused(index: PalmIndex) -> None:
    with pytest.raises(TemplateFormatError):
        index.add("x", "y", _random(1, (16, 16)))
    with pytest.raises(TemplateFormatError):
        index.search(_random(1, (16, 16)), shortlist=3)
    with pytest.raises(ValueError):
        index.search(_random(1), shortlist=0)


def test_concurrent_searches_and_mutations(index: PalmIndex) -> None:
    def search(i: int) -> str:
        return index.search(_noisy(_random(i % 20), 5000 + i), shortlist=10)[0].subject_id

    def churn(i: int) -> None:
        index.add(f"extra-{i}", f"extra-s-{i}", _random(10_000 + i))
        index.remove_subject(f"extra-s-{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        churned = [pool.submit(churn, i) for i in range(30)]
        results = list(pool.map(search, range(60)))
        for f in churned:
            f.result()
    assert results == [f"s-{i % 20}" for i in range(60)]
    assert len(index) == 40

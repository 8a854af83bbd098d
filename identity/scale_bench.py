"""1:N identification benchmark at gallery sizes of 10^3..10^7 templates (measured at
10^4..10^6).

Gallery = ``real`` Tongji palms (one session-1 template each; their session-2 captures
are the genuine probes) + filler templates up to ``gallery`` rows. Fillers are made
from the templates of *other* Tongji palms (never the probed ones), vectorised:

* code: a mosaic of 8 horizontal bands of 4 cell rows, each band (all 3 bit planes)
  copied from a randomly chosen source template, then every bit flipped with
  probability 1/8 (AND of three uniform random bytes). Bands keep the real spatial
  correlation and per-cell orientation statistics of palm codes; mixing 8 palms and
  the noise make every filler an impostor of every probe.
* mask: the whole validity mask of one random source template (real masked-cell
  statistics; masks are shared, as in the index's mask table).

Everything is measured on what the live :class:`identity.service.IdentityService`
holds and runs: an index whose codes, masks and pooled first stage are protected by
one revocable transform (:mod:`identity.revocable`), searched with the probe
prepared under that transform; templates at rest in per-person envelope encryption
(:class:`identity.keyring.Keyring`); the database restart is the service's own
:meth:`~identity.service.IdentityService.rebuild` (batched packed adds) and the
snapshot restart reads the protected rows back with the same transform key, as
:meth:`~identity.service.IdentityService.load` does.

Measures (ISO/IEC 19795-1 terms): identify time of one query on one thread, shortlist
recall, bytes per template, enrolment rate and the restart times (snapshot, database;
seconds to 4 significant digits, :func:`round_seconds`).
The index searches in stages with early accept (:meth:`identity.index.PalmIndex.search_detail`):
the report gives the fraction of probes that stopped early, the time of each path, and
checks every early answer against the same search run to its last stage.
"""

from __future__ import annotations

import gc
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from identity import params
from identity.decision import gallery_threshold
from identity.index import Candidate, EarlyAccept, IndexRows, PalmIndex
from identity.keyring import FixedKeyProvider, InMemorySubjectKeyStore, Keyring
from identity.matcher import PreparedProbe, ReferenceSet
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.revocable import RevocableTransform
from identity.service import IdentityService, decide, fused_subject_scores
from identity.settings import IdentitySettings
from identity.snapshot import (
    SNAPSHOT_INFO,
    SnapshotError,
    SnapshotRows,
    read_snapshot,
    write_snapshot,
)
from identity.template import Template, code_nbytes, mask_nbytes

U8 = npt.NDArray[np.uint8]
BANDS = 8
SNAPSHOT_CHECK_PROBES = 20  # probes searched in the original and the restored index
# Stage-1 recall counts probes whose exhaustive CompCode best is their own palm at or above
# this CompCode score: the CompCode identification threshold before the fused second stage
# (params.IDENTIFY_THRESHOLD until 2026-11-30), so recall keeps its earlier definition.
RECALL_FLOOR = 0.28


@dataclass(frozen=True)
class BenchData:
    """Real templates: ``gallery[i]`` is palm i's reference, ``probes`` are (palm i, template)
    genuine probes, ``sources`` templates of other palms for the fillers."""

    gallery: list[Template]
    probes: list[tuple[int, Template]]
    sources: list[Template]


@dataclass(frozen=True)
class _Setup:
    """The keys of one bench run: per-person envelope encryption (as the live service
    stores templates) and the revocable transform of every index code."""

    keys: InMemorySubjectKeyStore
    cipher: Keyring
    transform: RevocableTransform
    settings: IdentitySettings

    @classmethod
    def new(cls, shortlist: int, threshold: float, coarse_from: int) -> _Setup:
        keys = InMemorySubjectKeyStore()
        settings = IdentitySettings(shortlist_size=shortlist, identify_threshold=threshold,
                                    faiss_threads=1, index_coarse_from=coarse_from)
        kek = FixedKeyProvider(os.urandom(32), "bench-kek")
        return cls(keys, Keyring(kek, keys), RevocableTransform(os.urandom(32)), settings)

    def index(self) -> PalmIndex:
        """An empty index as the service makes it (same transform, same coarse size), its
        early accept made for the bench's decision threshold and margin."""
        rule = EarlyAccept(threshold=self.settings.identify_threshold,
                           margin=self.settings.ambiguity_margin,
                           target_fpir=self.settings.target_fpir)
        return PalmIndex(coarse_from=self.settings.index_coarse_from, transform=self.transform,
                         early_accept=rule)


def filler_codes(sources: list[Template], n: int, seed: int) -> tuple[U8, U8]:
    """``n`` filler (codes, masks): (n, code_nbytes) and (n, mask_nbytes) uint8 (see module)."""
    grid = sources[0].grid
    if grid[0] % BANDS:
        raise ValueError(f"grid height {grid[0]} is not a multiple of {BANDS} bands")
    rng = np.random.default_rng(seed)
    src_c = np.stack([np.frombuffer(t.reference_code, np.uint8) for t in sources])
    src_m = np.stack([np.frombuffer(t.mask[: mask_nbytes(grid)], np.uint8) for t in sources])
    band = src_c.reshape(len(sources), 3, BANDS, -1)  # (K, planes, bands, bytes per band)
    pick = rng.integers(0, len(sources), (n, BANDS))
    codes = band[pick, :, np.arange(BANDS)[None, :], :]  # (n, bands, planes, bytes)
    codes = np.ascontiguousarray(codes.transpose(0, 2, 1, 3)).reshape(n, code_nbytes(grid))
    shape = codes.shape
    codes ^= (rng.integers(0, 256, shape, dtype=np.uint8) & rng.integers(0, 256, shape,
              dtype=np.uint8) & rng.integers(0, 256, shape, dtype=np.uint8))
    return codes, src_m[rng.integers(0, len(sources), n)]


def filler_ordinal(sources: list[Template], n: int, seed: int) -> U8:
    """The ordinal codes of the ``n`` fillers of :func:`filler_codes` with the same seed:
    (n, code_nbytes) uint8. Each filler takes its 8 bands from the same source templates
    as its CompCode (the same draw of the same generator), so its two codes come from
    the same palms, with bit noise of its own (probability 1/8 per bit, another stream)."""
    grid = sources[0].grid
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(sources), (n, BANDS))  # as in filler_codes
    src = np.stack([np.frombuffer(t.ordinal[: code_nbytes(grid)], np.uint8) for t in sources])
    band = src.reshape(len(sources), 3, BANDS, -1)
    codes = band[pick, :, np.arange(BANDS)[None, :], :]
    codes = np.ascontiguousarray(codes.transpose(0, 2, 1, 3)).reshape(n, code_nbytes(grid))
    noise = np.random.default_rng([seed, 1])
    codes ^= (noise.integers(0, 256, codes.shape, dtype=np.uint8)
              & noise.integers(0, 256, codes.shape, dtype=np.uint8)
              & noise.integers(0, 256, codes.shape, dtype=np.uint8))
    return codes


class _StoredFillers:
    """The fillers as the repository would hold them, for the second stage.

    Their clear templates (CompCode, mask, ordinal of :func:`filler_codes` and
    :func:`filler_ordinal`, regenerated after the index memory is measured) are
    encrypted under each filler person's own data key on first need, *outside* the
    timed path; the timed path then reads, decrypts and scores them as the service does.
    """

    def __init__(self, data: BenchData, n: int, seed: int, setup: _Setup,
                 repo: InMemoryTemplateRepository) -> None:
        self._grid = data.sources[0].grid
        parts = [(filler_codes(data.sources, m, seed + k), filler_ordinal(data.sources, m,
                                                                           seed + k))
                 for k, m in enumerate(_chunks(n))]
        width = code_nbytes(self._grid)
        empty = np.zeros((0, width), np.uint8)
        self._codes = np.concatenate([empty] + [c for (c, _), _ in parts])
        self._masks = np.concatenate([np.zeros((0, mask_nbytes(self._grid)), np.uint8)]
                                     + [m for (_, m), _ in parts])
        self._ordinal = np.concatenate([empty] + [o for _, o in parts])
        self._setup, self._repo = setup, repo
        self._stored: set[str] = set()

    def ensure(self, subject_ids: list[str]) -> None:
        """Store (encrypted) every filler of ``subject_ids`` not stored yet."""
        records = []
        for sid in subject_ids:
            if not sid.startswith("f") or sid in self._stored:
                continue
            j = int(sid[1:])
            t = Template(self._grid, self._codes[j].tobytes(), self._masks[j].tobytes(), 1,
                         self._ordinal[j].tobytes())
            records.append(TemplateRecord(sid, sid, self._setup.cipher.encrypt(
                sid, t.rotations_only().to_bytes()), datetime.now(UTC)))
            self._stored.add(sid)
        if records:
            self._repo.add(records)


def _chunks(n: int, chunk: int = 100_000) -> list[int]:
    return [min(chunk, n - start) for start in range(0, n, chunk)]


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _timed_enrol(index: PalmIndex, data: BenchData, setup: _Setup,
                 repo: InMemoryTemplateRepository) -> float:
    """Encrypt (a new data key per person), store and index every real gallery template,
    one at a time as :meth:`IdentityService.enrol` does after its checks; returns
    templates per second."""
    start = time.perf_counter()
    for i, t in enumerate(data.gallery):
        subject, tid = f"real-{i}", f"real-t-{i}"
        blob = setup.cipher.encrypt(subject, t.rotations_only().to_bytes())
        repo.add([TemplateRecord(tid, subject, blob, datetime.now(UTC))])
        index.add(tid, subject, t)
    return len(data.gallery) / (time.perf_counter() - start)


def _add_fillers(index: PalmIndex, data: BenchData, n: int, seed: int) -> None:
    start = 0
    for k, m in enumerate(_chunks(n)):
        codes, masks = filler_codes(data.sources, m, seed + k)
        ids = [f"f{start + j}" for j in range(m)]
        index.add_packed(ids, ids, codes, masks)
        start += m


def _restart_rate(data: BenchData, setup: _Setup, records: int) -> float:
    """Templates per second of :meth:`IdentityService.rebuild` over ``records`` stored
    templates (one person each: decrypt with the person's data key, parse, transform,
    index in packed batches). Raises RuntimeError if the rebuild loses templates."""
    repo = InMemoryTemplateRepository()
    now, n = datetime.now(UTC), len(data.gallery)
    repo.add([TemplateRecord(f"r-t-{j}", f"r{j}", setup.cipher.encrypt(
        f"r{j}", data.gallery[j % n].rotations_only().to_bytes()), now) for j in range(records)])
    service = IdentityService(repository=repo, cipher=setup.cipher, settings=setup.settings,
                              transform=setup.transform)
    gc.collect()
    start = time.perf_counter()
    count = service.rebuild()
    elapsed = time.perf_counter() - start
    if count != records:
        raise RuntimeError(f"rebuild indexed {count} of {records} templates")
    return records / elapsed


def run(data: BenchData, gallery: int, *, seed: int = 2026,
        shortlist: int = params.SHORTLIST_SIZE,
        threshold: float = params.IDENTIFY_THRESHOLD,
        coarse_from: int = params.INDEX_COARSE_FROM) -> dict[str, Any]:
    """Build a gallery of ``gallery`` templates and measure; returns the JSON-able report.

    ``coarse_from``: gallery size (templates) from which the first stage scans pooled
    codes, as the service's ``index_coarse_from`` setting.
    Raises ValueError if ``data`` has no gallery template, probe or filler source, or
    ``gallery`` is smaller than the real palm count.
    """
    if not (data.gallery and data.probes and data.sources):
        raise ValueError(f"nothing to benchmark: {len(data.gallery)} gallery templates, "
                         f"{len(data.probes)} probes, {len(data.sources)} filler sources")
    if gallery < len(data.gallery):
        raise ValueError(f"gallery {gallery} < {len(data.gallery)} real palms")
    faiss.omp_set_num_threads(1)
    setup = _Setup.new(shortlist, threshold, coarse_from)
    index = setup.index()
    repo = InMemoryTemplateRepository()
    enrol_per_s = _timed_enrol(index, data, setup, repo)
    gc.collect()
    rss0 = _rss_bytes()
    build = time.perf_counter()
    _add_fillers(index, data, gallery - len(data.gallery), seed)
    build_s = time.perf_counter() - build
    gc.collect()
    n_fill = max(1, gallery - len(data.gallery))
    report: dict[str, Any] = {
        "gallery": gallery, "real_palms": len(data.gallery), "probes": len(data.probes),
        "coarse_stage": "pooled" if index.coarse else "full", "shortlist_size": shortlist,
        "index_codes": "revocable (keyed cell permutation + XOR; pooled codes protected)",
        "filler_build_s": round_seconds(build_s),
        "bytes_per_palm_ram": round((_rss_bytes() - rss0) / n_fill, 1),
        "bytes_per_palm_arrays": round(index.nbytes() / len(index), 1),
        **_disk_bytes(data, setup),
        "enrol_per_s": round(enrol_per_s, 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    fillers = _StoredFillers(data, gallery - len(data.gallery), seed, setup, repo)
    report.update(_search_measures(index, data, shortlist, (setup, repo, fillers)))
    # The service's decision threshold (fused score) for a gallery of this many persons
    # (one template each here), at which probes_identified / misidentified are counted.
    report["decision_threshold_at_gallery"] = round(gallery_threshold(
        threshold, setup.settings.target_fpir, index.subject_count()), 4)
    report.update(_early_accept_check(index, data, (setup, repo, fillers)))
    rate = _restart_rate(data, setup, min(gallery, 20_000))
    report["restart_s_database"] = round_seconds(gallery / rate)
    report["restart_s_database_method"] = (
        "IdentityService.rebuild rate (decrypt with the person's data key, parse, transform, "
        "batched add) on min(gallery, 20000) in-memory records, times the gallery")
    report.update(_snapshot_restart(index, data, setup))
    return report


def round_seconds(seconds: float) -> float:
    """A time in seconds to 4 significant digits, so that a short one (a restart of a small
    gallery: 0.01234 s) keeps its size instead of rounding to 0, and a long one no noise."""
    return float(f"{seconds:.4g}")


def _disk_bytes(data: BenchData, setup: _Setup) -> dict[str, int]:
    """Stored bytes: one template blob under its person's data key, and the person's
    wrapped data key (one row per person, whatever their template count)."""
    subject = "x" * 36
    blob = setup.cipher.encrypt(subject, data.gallery[0].rotations_only().to_bytes())
    wrapped = setup.keys.get(subject)
    setup.cipher.shred(subject)
    return {"bytes_per_palm_disk": len(blob),
            "bytes_per_person_key": 0 if wrapped is None else len(wrapped.wrapped)}


def _snapshot_restart(index: PalmIndex, data: BenchData, setup: _Setup) -> dict[str, Any]:
    """Write the encrypted snapshot of the protected rows (as
    :meth:`IdentityService.save_snapshot`) to a temporary folder; time reading it into
    a new index of the same transform (as :meth:`IdentityService.load`). Then the first
    probes are searched in both indexes: the restored one must answer the same."""
    key = setup.cipher.derive_key(SNAPSHOT_INFO)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "palm-index.snapshot"
        rows = index.export_rows()
        size = write_snapshot(path, SnapshotRows(
            index.grid, rows.template_ids, rows.subject_ids, rows.codes, rows.masks,
            rows.pooled, rows.key_id), key=key, key_id=setup.cipher.key_id, cursor=0)
        del rows
        gc.collect()
        start = time.perf_counter()
        restored = _load_snapshot(path, setup)
        elapsed = time.perf_counter() - start
    probes = [p for _, p in data.probes[:SNAPSHOT_CHECK_PROBES]]
    same = all(_top(restored.search(p, 5)) == _top(index.search(p, 5)) for p in probes)
    return {"restart_s_snapshot": round_seconds(elapsed),
            "snapshot_bytes_per_palm": round(size / max(1, len(restored)), 1),
            "snapshot_restored_templates": len(restored),
            "snapshot_search_identical": same}


def _load_snapshot(path: Path, setup: _Setup) -> PalmIndex:
    """The index of a snapshot, as the service loads it (key derived from the KEK, the
    transform id checked, protected rows added unchanged). Raises SnapshotError."""
    rows, _ = read_snapshot(path, key=setup.cipher.derive_key(SNAPSHOT_INFO),
                            key_id=setup.cipher.key_id, transform_id=setup.transform.key_id)
    index = setup.index()
    if rows.grid != index.grid or rows.pooled is None:
        raise SnapshotError(f"snapshot grid {rows.grid} or coarse codes do not fit the index")
    index.add_rows(IndexRows(rows.transform_id, rows.template_ids, rows.subject_ids,
                             rows.codes, rows.masks, rows.pooled))
    return index


def _top(found: list[Candidate]) -> list[tuple[str, str, float]]:
    return [(c.subject_id, c.template_id, c.score) for c in found]


def _search_measures(index: PalmIndex, data: BenchData, shortlist: int,
                     stage2: tuple[_Setup, InMemoryTemplateRepository, _StoredFillers]
                     ) -> dict[str, Any]:
    """Identify time (both stages), shortlist recall of stage 1 against an exhaustive exact
    search, the largest difference between a score of the protected index and the clear
    score, how the staged search went (see :meth:`PalmIndex.search_detail`), and the
    decisions after the fused second stage.

    Stage 1 = the index search; stage 2 = :func:`identity.service.fused_subject_scores`
    of the ``rescore_subjects`` best subjects, their templates read from the repository
    and decrypted with each person's data key, as :meth:`IdentityService._search` does
    (fillers are encrypted on first need outside the timer, see :class:`_StoredFillers`).
    Exhaustive = the exact CompCode matcher, in the clear, over every real gallery template
    (fillers are impostors). A probe counts for recall when the exhaustive search gives
    its own palm first at CompCode score >= ``RECALL_FLOOR``; it is recalled when stage 1
    returns that palm first. Each real palm has one template, so every real candidate's
    score must equal its clear exhaustive score (the probe is prepared under the index's
    transform). Decisions: :func:`identity.service.decide` on the stage-2 candidates at the
    service's threshold for this gallery. Times in ms; "early" = probes that stopped before
    the last stage of stage 1, "all_stages" = the others.
    """
    setup, repo, fillers = stage2
    settings = setup.settings
    threshold = gallery_threshold(settings.identify_threshold, settings.target_fpir,
                                  index.subject_count())
    refs = ReferenceSet.from_templates(data.gallery)
    times, rescore_ms, early, stages = [], [], [], []
    wanted, recalled, misidentified, identified, error = 0, 0, 0, 0, 0.0
    accept: float | None = None
    for owner, probe in data.probes:
        start = time.perf_counter()
        result = index.search_detail(probe, shortlist)
        stage1 = (time.perf_counter() - start) * 1000.0
        found, accept = result.candidates, result.accept_score
        top_ids = [c.subject_id for c in found[: settings.rescore_subjects]]
        fillers.ensure(top_ids)  # untimed: makes the stored rows the service would read
        start = time.perf_counter()
        fused = _second_stage(probe, top_ids, setup, repo)
        rescore_ms.append((time.perf_counter() - start) * 1000.0)
        times.append(stage1 + rescore_ms[-1])
        early.append(result.early_accepted)
        stages.append(result.stages)
        exact = PreparedProbe(probe).scores(refs)
        error = max([error] + [abs(c.score - float(exact[int(c.subject_id[5:])]))
                               for c in found if c.subject_id.startswith("real-")])
        best = int(np.argmax(exact))
        top = found[0] if found else None
        if best == owner and exact[best] >= RECALL_FLOOR:
            wanted += 1
            recalled += int(top is not None and top.subject_id == f"real-{owner}")
        outcome, subject = decide(fused, settings, threshold)[:2]
        identified += int(outcome == "identified" and subject == f"real-{owner}")
        misidentified += int(outcome == "identified" and subject != f"real-{owner}")
    ms, stopped = np.asarray(times), np.asarray(early, dtype=bool)
    return {
        "identify_ms_p50": _pct(ms, 50),
        "identify_ms_p99": _pct(ms, 99),
        "rescore_ms_p50": _pct(np.asarray(rescore_ms), 50),
        "rescore_ms_p99": _pct(np.asarray(rescore_ms), 99),
        "rescore_subjects": settings.rescore_subjects,
        "shortlist_recall": round(recalled / max(1, wanted), 4),
        "probes_identifiable_exhaustive": wanted,
        "probes_recalled": recalled,
        "probes_identified": identified,
        "misidentified": misidentified,
        "rescore_max_abs_error_vs_clear": error,
        "early_accept_score": None if accept is None else round(accept, 4),
        "early_accept_fraction": round(float(stopped.mean()), 4) if len(ms) else 0.0,
        "identify_ms_p50_early": _pct(ms[stopped], 50),
        "identify_ms_p99_early": _pct(ms[stopped], 99),
        "identify_ms_p50_all_stages": _pct(ms[~stopped], 50),
        "identify_ms_p99_all_stages": _pct(ms[~stopped], 99),
        "search_stages_run": {str(k): stages.count(k) for k in sorted(set(stages))},
    }


def _second_stage(probe: Template, subject_ids: list[str], setup: _Setup,
                  repo: InMemoryTemplateRepository) -> list[Candidate]:
    """The service's second stage on ``subject_ids``: their stored templates read,
    decrypted with each person's data key and scored fused (best first)."""
    stored = [(r, Template.from_bytes(setup.cipher.decrypt(r.subject_id, r.ciphertext)))
              for r in repo.of_subjects(subject_ids)]
    return fused_subject_scores(probe, stored)


def _pct(values: npt.NDArray[np.float64], q: float) -> float | None:
    """The ``q``-th percentile (ms, 2 decimals) of ``values``; None when there are none."""
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def _early_accept_check(index: PalmIndex, data: BenchData,
                        stage2: tuple[_Setup, InMemoryTemplateRepository, _StoredFillers]
                        ) -> dict[str, Any]:
    """Every probe whose search stopped early, searched again to the last stage (early
    accept off): how many got another decision (:func:`identity.service.decide` on the
    fused second stage of each, at the service's threshold for this gallery: outcome and
    subject) or another top subject of stage 1. Not timed."""
    setup, repo, fillers = stage2
    settings = setup.settings
    checked = changed = other_top = 0
    threshold = gallery_threshold(settings.identify_threshold, settings.target_fpir,
                                  index.subject_count())

    def decision(probe: Template, found: list[Candidate]) -> tuple[object, ...]:
        top = [c.subject_id for c in found[: settings.rescore_subjects]]
        fillers.ensure(top)
        return decide(_second_stage(probe, top, setup, repo), settings, threshold)[:2]

    for _, probe in data.probes:
        quick = index.search_detail(probe, settings.shortlist_size)
        if not quick.early_accepted:
            continue
        full = index.search_detail(probe, settings.shortlist_size, early_accept=False)
        checked += 1
        changed += int(decision(probe, quick.candidates) != decision(probe, full.candidates))
        other_top += int(quick.candidates[0].subject_id != full.candidates[0].subject_id)
    return {"early_accept_checked_against_all_stages": checked,
            "early_accept_decision_changed": changed,
            "early_accept_top_subject_changed": other_top}


def load_data(folder: Any, *, real_palms: int = 150, probes_per_palm: int = 2,
              source_palms: int = 150) -> BenchData:
    """Templates of a manifest folder (:func:`identity.evaluate_run.read_manifest`).

    The first ``real_palms`` identities (sorted) give the gallery (their first
    session-1 capture) and probes (their first ``probes_per_palm`` session-2
    captures); the next ``source_palms`` identities, every capture, feed the fillers.
    Raises ManifestError on a bad folder, and ValueError when too few palms are listed
    or when no real palm has a usable session-1 image, no real palm a usable session-2
    image, or no filler palm a usable image (the reason names the first failures).
    """
    from identity.evaluate_run import acquire, read_manifest

    caps = read_manifest(folder, limit_identities=real_palms + source_palms)
    palms = sorted({c.identity for c in caps})
    real, other = palms[:real_palms], set(palms[real_palms:])
    sessions = sorted({c.session for c in caps})
    if len(real) < real_palms or not other or len(sessions) < 2:
        raise ValueError("the folder needs more palms, and two sessions")
    wanted = [c for c in caps if c.identity in other]
    by_palm: dict[tuple[str, str], list[Any]] = {}
    for c in sorted(caps, key=lambda d: d.capture):
        by_palm.setdefault((c.identity, c.session), []).append(c)
    enrol = [c for p in real for c in by_palm.get((p, sessions[0]), [])[:1]]
    wanted += enrol
    wanted += [c for p in real for c in by_palm.get((p, sessions[1]), [])[:probes_per_palm]]
    acq = acquire(wanted)
    gallery: dict[str, Template] = {}
    probes: list[tuple[str, Template]] = []
    sources: list[Template] = []
    for c, t in zip(acq.captures, acq.templates, strict=True):
        if c.identity in other:
            sources.append(t)
        elif c.session == sessions[0]:
            gallery[c.identity] = t
        else:
            probes.append((c.identity, t))
    order = [p for p in real if p in gallery]
    pos = {p: i for i, p in enumerate(order)}
    data = BenchData([gallery[p] for p in order],
                     [(pos[p], t) for p, t in probes if p in pos], sources)
    failed = [*acq.failures, *getattr(acq, "unreadable", [])]  # FTA, then unreadable files
    _check_usable(data, real, sessions, {str(c.path) for c in enrol}, failed)
    return data


def _check_usable(data: BenchData, real: list[str], sessions: list[str],
                  enrol_paths: set[str], failures: list[tuple[str, str]]) -> None:
    """Raise ValueError when ``data`` cannot be benchmarked: no gallery template (no real
    palm has a usable first-session image), no probe, or no filler source template. The
    reason gives up to three (path, failure) of the images that failed."""

    def shown(paths: set[str] | None) -> str:
        found = [f"{path}: {why}" for path, why in failures if paths is None or path in paths]
        return f" (e.g. {'; '.join(found[:3])})" if found else ""

    if not data.gallery:
        raise ValueError(f"none of the {len(real)} real palms has a usable session-"
                         f"{sessions[0]} image for the gallery{shown(enrol_paths)}")
    if not data.probes:
        raise ValueError(f"no real palm with a gallery template has a usable session-"
                         f"{sessions[1]} probe image{shown(None)}")
    if not data.sources:
        raise ValueError(f"no usable image of the filler palms (identities after the first "
                         f"{len(real)}){shown(None)}")

"""1:N identification benchmark at gallery sizes of 10^4..10^6 templates.

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

Measures (ISO/IEC 19795-1 terms): identify time of one query on one thread, shortlist
recall, bytes per template, enrolment rate and the time to rebuild from the database.
"""

from __future__ import annotations

import gc
import os
import resource
import time
import uuid
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from identity import params
from identity.index import PalmIndex
from identity.matcher import PreparedProbe, ReferenceSet
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.template import Template, code_nbytes, mask_nbytes

U8 = npt.NDArray[np.uint8]
BANDS = 8


@dataclass(frozen=True)
class BenchData:
    """Real templates: ``gallery[i]`` is palm i's reference, ``probes`` are (palm i, template)
    genuine probes, ``sources`` templates of other palms for the fillers."""

    gallery: list[Template]
    probes: list[tuple[int, Template]]
    sources: list[Template]


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


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _timed_enrol(index: PalmIndex, data: BenchData, cipher: TemplateCipher,
                 repo: InMemoryTemplateRepository) -> float:
    """Encrypt, store and index every real gallery template; returns templates per second."""
    start = time.perf_counter()
    for i, t in enumerate(data.gallery):
        subject, tid = f"real-{i}", f"real-t-{i}"
        blob = cipher.encrypt(subject, t.to_bytes())
        repo.add([TemplateRecord(tid, subject, blob, _now())])
        index.add(tid, subject, t)
    return len(data.gallery) / (time.perf_counter() - start)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _add_fillers(index: PalmIndex, data: BenchData, n: int, seed: int) -> None:
    chunk = 100_000
    for k, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        codes, masks = filler_codes(data.sources, m, seed + k)
        ids = [f"f{start + j}" for j in range(m)]
        index.add_packed(ids, ids, codes, masks)


def _restart_rate(data: BenchData, cipher: TemplateCipher, records: int) -> float:
    """Templates per second of a rebuild from the database (decrypt + parse + index)."""
    repo = InMemoryTemplateRepository()
    blobs = [(t, f"s{j}") for j, t in enumerate(data.gallery)]
    now = _now()
    repo.add([TemplateRecord(uuid.uuid4().hex, s, cipher.encrypt(s, blobs[j % len(blobs)][0]
                             .to_bytes()), now) for j, s in ((j, f"r{j}") for j in range(records))])
    start = time.perf_counter()
    index = PalmIndex()
    for r in repo.all():
        index.add(r.template_id, r.subject_id, Template.from_bytes(
            cipher.decrypt(r.subject_id, r.ciphertext)))
    return records / (time.perf_counter() - start)


def run(data: BenchData, gallery: int, *, seed: int = 2026,
        shortlist: int = params.SHORTLIST_SIZE,
        threshold: float = params.IDENTIFY_THRESHOLD) -> dict[str, Any]:
    """Build a gallery of ``gallery`` templates and measure; returns the JSON-able report.

    Raises ValueError if ``gallery`` is smaller than the real palm count.
    """
    if gallery < len(data.gallery):
        raise ValueError(f"gallery {gallery} < {len(data.gallery)} real palms")
    faiss.omp_set_num_threads(1)
    cipher = TemplateCipher(os.urandom(32), "bench-kek")
    index = PalmIndex()
    enrol_per_s = _timed_enrol(index, data, cipher, InMemoryTemplateRepository())
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
        "filler_build_s": round(build_s, 2),
        "bytes_per_palm_ram": round((_rss_bytes() - rss0) / n_fill, 1),
        "bytes_per_palm_arrays": round(index.nbytes() / len(index), 1),
        "bytes_per_palm_disk": len(cipher.encrypt("x" * 36, data.gallery[0].to_bytes())),
        "enrol_per_s": round(enrol_per_s, 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    report.update(_search_measures(index, data, shortlist, threshold))
    rate = _restart_rate(data, cipher, min(gallery, 20_000))
    report["restart_s_database"] = round(gallery / rate, 1)
    report["restart_s_database_method"] = (
        "decrypt+parse+index rate on min(gallery, 20000) stored records, times the gallery")
    report.update(_snapshot_restart(index))
    return report


def _snapshot_restart(index: PalmIndex) -> dict[str, Any]:
    """Write the encrypted snapshot to a temporary folder; time reading it into a new index."""
    import tempfile
    from pathlib import Path

    from identity.snapshot import SnapshotRows, read_snapshot, write_snapshot

    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.snapshot"
        tids, sids, codes, masks = index.export()
        size = write_snapshot(path, SnapshotRows(index.grid, tids, sids, codes, masks),
                              key=key, key_id="bench", cursor=1)
        del tids, sids, codes, masks
        gc.collect()
        start = time.perf_counter()
        rows, _ = read_snapshot(path, key=key, key_id="bench")
        restored = PalmIndex()
        restored.add_packed(rows.template_ids, rows.subject_ids, rows.codes, rows.masks)
        elapsed = time.perf_counter() - start
    return {"restart_s_snapshot": round(elapsed, 4),
            "snapshot_bytes_per_palm": round(size / max(1, len(restored)), 1)}


def _search_measures(index: PalmIndex, data: BenchData, shortlist: int,
                     threshold: float) -> dict[str, Any]:
    """Identify time, and shortlist recall against an exhaustive exact search.

    Exhaustive = the exact matcher over every real gallery template (fillers are
    impostors: their best exact score is reported, and must stay below the threshold).
    A probe counts when the exhaustive search identifies its own palm (best score,
    >= threshold); it is recalled when the indexed search returns that palm first.
    """
    refs = ReferenceSet.from_templates(data.gallery)
    times, wanted, recalled, misidentified = [], 0, 0, 0
    for owner, probe in data.probes:
        start = time.perf_counter()
        found = index.search(probe, shortlist)
        times.append((time.perf_counter() - start) * 1000.0)
        exact = PreparedProbe(probe).scores(refs)
        best = int(np.argmax(exact))
        top = found[0] if found else None
        if top is not None and top.subject_id != f"real-{owner}" and top.score >= threshold:
            misidentified += 1
        if best == owner and exact[best] >= threshold:
            wanted += 1
            recalled += int(top is not None and top.subject_id == f"real-{owner}")
    ms = np.asarray(times)
    return {
        "identify_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "identify_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "shortlist_recall": round(recalled / max(1, wanted), 4),
        "probes_identifiable_exhaustive": wanted,
        "misidentified_above_threshold": misidentified,
    }


def load_data(folder: Any, *, real_palms: int = 150, probes_per_palm: int = 2,
              source_palms: int = 150) -> BenchData:
    """Templates of a manifest folder (:func:`identity.evaluate_run.read_manifest`).

    The first ``real_palms`` identities (sorted) give the gallery (their first
    session-1 capture) and probes (their first ``probes_per_palm`` session-2
    captures); the next ``source_palms`` identities, every capture, feed the fillers.
    Raises ManifestError on a bad folder and ValueError when too few palms are usable.
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
    wanted += [c for p in real for c in by_palm.get((p, sessions[0]), [])[:1]]
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
    return BenchData([gallery[p] for p in order],
                     [(pos[p], t) for p, t in probes if p in pos], sources)

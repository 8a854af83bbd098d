"""Run the whole palm pipeline over a manifest folder and measure it (ISO/IEC 19795-1).

Input: ``DIR/manifest.csv`` with the columns ``path,identity,session,capture,source``
(``path`` relative to ``DIR`` and inside it, see :func:`manifest_path`; extra columns are
ignored). Every image goes through
:func:`identity.imageio.decode_image` -> :func:`identity.roi.extract_roi` ->
:func:`identity.features.extract_features` (CompCode and OrdinalCode) ->
:class:`identity.template.Template`, timed per image. Comparisons use the pipeline's
fused CompCode + OrdinalCode score (:func:`identity.matcher.score_matrix`).

Protocol (the one of the shared data README): when the manifest has two or more
session values, every capture of the first session (sorted) is a reference and is
compared with every capture of the second session, the probe (genuine = same identity,
impostor = different); later sessions are not used. With one session, all pairs of
different captures are compared once (the capture later in manifest order is the probe).

* FTA (failure to acquire, capture level): captures that could not be read, decoded,
  or gave no usable ROI, divided by all captures in the protocol. They take part in
  no comparison; the FMR/FNMR reported are of the acquired captures.
* FTE (failure to enrol, identity level): identities with no usable enrolment
  capture (two sessions: none in the reference session; one session: none at all),
  divided by all identities.
* Rank-1: closed set. Two sessions: each probe against all references, ranked by
  identity; one session: each capture against all the others (leave one out). Only
  probes whose identity has a reference count (one session: another acquired capture of
  the same identity).

A measure without data is ``None`` (``n/a`` on screen), never 0: EER and FNMR at FMR
without genuine or impostor comparisons, rank-1 without a probe that has a reference,
FTA / FTE without captures / identities, the timings without acquired captures.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from identity import evaluation as ev
from identity.errors import AcquisitionError, IdentityError, InvalidImageError
from identity.features import extract_features
from identity.imageio import decode_image
from identity.matcher import PreparedProbe, ReferenceSet, score_matrix
from identity.roi import extract_roi
from identity.template import Template

REQUIRED_COLUMNS = ("path", "identity", "session", "capture")
FMR_TARGETS = {"1e-3": 1e-3, "1e-4": 1e-4, "1e-5": 1e-5}
Progress = Callable[[str, int, int], None]
"""Called with (stage name, done, total) as the run advances."""


class ManifestError(IdentityError):
    """The folder or its manifest.csv is missing, unreadable or malformed."""

    code = "invalid_manifest"


@dataclass(frozen=True)
class Capture:
    """One manifest row; ``path`` is resolved against the manifest's folder."""

    path: Path
    identity: str
    session: str
    capture: str


@dataclass
class Acquired:
    """Templates of the captures that were acquired, and the failures (path, reason)."""

    captures: list[Capture] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)
    extract_ms: list[float] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def read_manifest(folder: Path, limit_identities: int | None = None) -> list[Capture]:
    """The captures listed in ``folder/manifest.csv``, in file order.

    ``limit_identities`` keeps the first N identities in sorted order. Raises
    :class:`ManifestError` when the folder or file is missing, a required column is
    absent, a row has an empty field or a path that leaves the folder
    (:func:`manifest_path`), or no row is left.
    """
    manifest = folder / "manifest.csv"
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder")
    if not manifest.is_file():
        raise ManifestError(f"{manifest} does not exist")
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(f"{manifest} lacks the column(s) {', '.join(missing)}")
            rows = [_capture(folder, row, n) for n, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{manifest} cannot be read: {exc}") from exc
    if limit_identities is not None:
        keep = set(sorted({r.identity for r in rows})[:limit_identities])
        rows = [r for r in rows if r.identity in keep]
    if not rows:
        raise ManifestError(f"{manifest} lists no captures")
    return rows


def manifest_path(folder: Path, path: str) -> Path:
    """``folder / path`` for a manifest's ``path`` value, refused when it leaves the folder.

    The value must be relative and must not name a parent (no ``..`` part), the rule of
    the demo's ``--palms`` loader; symbolic links inside the folder are followed as they
    are (a data set may link its images). Raises :class:`ManifestError` otherwise.
    """
    rel = Path(path)
    if rel.is_absolute() or ".." in rel.parts or rel.drive:
        raise ManifestError(f"path {path!r} leaves the folder")
    return folder / rel


def _capture(folder: Path, row: dict[str | Any, str | Any], line: int) -> Capture:
    values = {c: (row.get(c) or "").strip() for c in REQUIRED_COLUMNS}
    empty = [c for c, v in values.items() if not v]
    if empty:
        raise ManifestError(f"manifest line {line}: empty {', '.join(empty)}")
    try:
        path = manifest_path(folder, values["path"])
    except ManifestError as exc:
        raise ManifestError(f"manifest line {line}: {exc.reason}") from None
    return Capture(path, values["identity"], values["session"], values["capture"])


def acquire(captures: list[Capture], progress: Progress | None = None) -> Acquired:
    """Run decode -> ROI -> features on each capture; failures are recorded, not raised."""
    out = Acquired()
    for n, cap in enumerate(captures, start=1):
        try:
            data = cap.path.read_bytes()
            start = time.perf_counter()
            roi = extract_roi(decode_image(data)).roi
            template = extract_features(roi).to_template()
            out.extract_ms.append((time.perf_counter() - start) * 1000.0)
            out.captures.append(cap)
            out.templates.append(template)
        except OSError as exc:
            out.failures.append((str(cap.path), f"unreadable: {exc.strerror or exc}"))
        except (InvalidImageError, AcquisitionError) as exc:
            out.failures.append((str(cap.path), f"{exc.code}: {exc.reason}"))
        if progress is not None:
            progress("extract", n, len(captures))
    return out


def _split(captures: list[Capture]) -> tuple[str, str] | None:
    sessions = sorted({c.session for c in captures})
    return (sessions[0], sessions[1]) if len(sessions) >= 2 else None


@dataclass(frozen=True)
class Evaluation:
    """``report``: JSON-ready numbers; ``genuine`` / ``impostor``: float64 score lists."""

    report: dict[str, Any]
    genuine: npt.NDArray[np.float64] = field(repr=False)
    impostor: npt.NDArray[np.float64] = field(repr=False)


def evaluate_folder(
    folder: Path, *, limit_identities: int | None = None, progress: Progress | None = None
) -> Evaluation:
    """Evaluate the pipeline on a manifest folder.

    The :attr:`Evaluation.report` has the keys

    ``eer``, ``fnmr_at_fmr`` (``"1e-3"``, ``"1e-4"``, ``"1e-5"``; ``None`` when
    there are too few impostor comparisons to resolve that FMR), ``rank1``, ``fta``,
    ``fte``, ``genuine_comparisons``, ``impostor_comparisons``, ``identities``,
    ``images``, ``extract_ms_p50``, ``compare_us_p50`` and details; rates are fractions.
    ``eer`` and ``fnmr_at_fmr`` are ``None`` when genuine or impostor comparisons are
    missing, ``rank1`` when no probe has a reference of its identity (see the module
    docstring). Raises :class:`ManifestError` on a bad folder or manifest.
    """
    captures = read_manifest(folder, limit_identities)
    split = _split(captures)
    if split is not None:
        captures = [c for c in captures if c.session in split]
    acquired = acquire(captures, progress)
    genuine, impostor, rank1 = _compare(acquired, split, progress)
    return Evaluation(_report(captures, acquired, split, genuine, impostor, rank1),
                      genuine, impostor)


def _compare(
    acq: Acquired, split: tuple[str, str] | None, progress: Progress | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float | None]:
    ids = np.array([c.identity for c in acq.captures], dtype=object)
    if split is None:
        probes = refs = np.arange(len(acq.captures))
    else:
        sessions = np.array([c.session for c in acq.captures], dtype=object)
        refs, probes = np.flatnonzero(sessions == split[0]), np.flatnonzero(sessions == split[1])
    scores = _matrix([acq.templates[i] for i in probes], [acq.templates[i] for i in refs],
                     progress)
    same = ids[probes][:, None] == ids[refs][None, :]
    if split is None:  # each pair once: the later capture is the probe
        pair = np.tril(np.ones_like(same, dtype=bool), k=-1)
        np.fill_diagonal(scores, -np.inf)  # leave one out for rank-1
        genuine, impostor = scores[pair & same], scores[pair & ~same]
    else:
        genuine, impostor = scores[same], scores[~same]
    rank1 = ev.rank1_rate(scores, list(ids[probes]), list(ids[refs])) if scores.size else None
    return genuine, impostor, rank1


def _matrix(probes: list[Template], refs: list[Template], progress: Progress | None
            ) -> npt.NDArray[np.float64]:
    out = np.zeros((len(probes), len(refs)), dtype=np.float64)
    for start in range(0, len(probes), 50):
        block = probes[start : start + 50]
        out[start : start + len(block)] = score_matrix(block, refs, fused=True)
        if progress is not None:
            progress("compare", start + len(block), len(probes))
    return out


def _report(captures: list[Capture], acq: Acquired, split: tuple[str, str] | None,
            genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64],
            rank1: float | None) -> dict[str, Any]:
    identities = sorted({c.identity for c in captures})
    enrol_session = split[0] if split else None
    enrolled = {c.identity for c in acq.captures if enrol_session in (None, c.session)}
    both = genuine.size > 0 and impostor.size > 0
    return {
        "protocol": f"session {split[0]} x session {split[1]}" if split else "all pairs",
        "eer": ev.equal_error_rate(genuine, impostor) if both else None,
        "fnmr_at_fmr": {k: (ev.fnmr_at_fmr(genuine, impostor, f) if both else None)
                        for k, f in FMR_TARGETS.items()},
        "fnmr_at_fmr_note": ("null = no genuine or no impostor comparisons, or fewer "
                             "impostor comparisons than 1/FMR: not resolvable"),
        "score_at_fmr": {k: (ev.score_at_fmr(impostor, f) if impostor.size else None)
                         for k, f in FMR_TARGETS.items()},
        "rank1": rank1,
        "fta": ev.failure_rate(len(acq.failures), len(captures)),
        "fte": ev.failure_rate(len(set(identities) - enrolled), len(identities)),
        "genuine_comparisons": int(genuine.size),
        "impostor_comparisons": int(impostor.size),
        "identities": len(identities),
        "images": len(captures),
        "extract_ms_p50": statistics.median(acq.extract_ms) if acq.extract_ms else None,
        "compare_us_p50": compare_time_us(acq.templates),
        "failures": [{"path": p, "reason": r} for p, r in acq.failures],
    }


def compare_time_us(templates: list[Template], repeats: int = 31) -> float | None:
    """Median time (microseconds) of one fused CompCode + OrdinalCode comparison over all
    shifts and rotations.

    Measured as a prepared fused probe scored against a batch of up to 256 references (as
    in 1:N search and in this evaluation), divided by the batch size; ``None`` without
    templates. Raises TemplateFormatError if a template lacks the ordinal code.
    """
    if not templates:
        return None
    refs = ReferenceSet.from_templates(templates[:256], fused=True)
    probe = PreparedProbe(templates[-1], fused=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        probe.scores(refs)
        times.append((time.perf_counter() - start) * 1e6 / len(refs))
    return statistics.median(times)


def write_det_plot(genuine: npt.ArrayLike, impostor: npt.ArrayLike, path: Path,
                   title: str = "DET") -> None:
    """Draw the DET curve (FNMR against FMR on normal-deviate axes, ISO/IEC 19795-1)
    to a PNG at ``path`` with matplotlib's Agg backend.

    Raises :class:`identity.evaluation.MetricsInputError` on empty score lists and
    OSError when the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = ev.det_curve(genuine, impostor)
    probit = np.vectorize(statistics.NormalDist().inv_cdf)
    lo, hi = 1e-6, 0.5
    x = probit(np.clip(curve.fmr, lo, hi))
    y = probit(np.clip(curve.fnmr, lo, hi))
    ticks = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5]
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        ax.plot(x, y, lw=1.5)
        ax.set_xticks(probit(ticks), [f"{t:g}" for t in ticks])
        ax.set_yticks(probit(ticks), [f"{t:g}" for t in ticks])
        ax.set_xlim(probit(lo), probit(hi))
        ax.set_ylim(probit(lo), probit(hi))
        ax.set_xlabel("FMR")
        ax.set_ylabel("FNMR")
        ax.set_title(title)
        ax.grid(True, lw=0.5)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)

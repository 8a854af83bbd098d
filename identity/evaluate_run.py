"""Run the whole palm pipeline over a manifest folder and measure it (ISO/IEC 19795-1).

Input: ``DIR/manifest.csv`` with the columns ``path,identity,session,capture,source``
(``path`` relative to ``DIR`` and inside it, see :func:`manifest_path`; extra columns are
ignored). Every image goes through
:func:`identity.imageio.decode_image_offline` (as the upload decoder, without its upload
limits: larger photos are shrunk to 4,096 px on their longest side) ->
:func:`identity.roi.extract_roi` ->
:func:`identity.features.extract_features` (CompCode and OrdinalCode) ->
:class:`identity.template.Template`, timed per image. Comparisons use the pipeline's
fused CompCode + OrdinalCode score (:func:`identity.matcher.score_matrix`).

Protocol (the one of the shared data README), decided per identity: session labels
are ordered naturally (:func:`natural_key`: numeric parts as numbers, so ``2`` comes
before ``10`` and ISO dates sort by date). When at least one identity has two or more
sessions, each identity's first session is its enrolment (its captures are references)
and its second session its probe session; every probe is compared with every reference
(genuine = same identity, impostor = different). Captures of an identity's third and
later sessions are not used; they are counted in ``captures_unused``. An identity with
a single session supplies references only. When no identity has two sessions (one
session overall), all pairs of different captures are compared once (the capture later
in manifest order is the probe).

Manifest problems are reported, never measured: the same file (resolved path) listed
again is dropped after its first row (``duplicate_rows``); the same file under two
identities is refused (:class:`ManifestError`). Copies are found by content too (SHA-256
of the bytes read, so hard links and byte-identical copies): a file byte-identical to an
earlier capture of the same identity is dropped like a duplicate row (listed with
``"same": "content"``), one byte-identical to a capture of another identity is refused
like the same file under two identities (found while the images are read: the run stops
there). Only the captures the protocol uses are read, so copies among unused sessions
are not looked for; empty files (failures to acquire) are never copies. A row whose file
cannot be read (missing, a folder, no permission, not a regular file such as a FIFO or a
device: OSError, see :func:`identity.imageio.read_image_file`) is a data error counted
in ``unreadable``, not an acquisition failure, and takes no part in ``images``, FTA or
FTE. A file larger than ``OFFLINE_MAX_ENCODED_BYTES`` is read no further and is a
failure to acquire. Paths are taken as written: a ``\\`` is a filename character, not a
separator, but a missing file whose path with ``/`` for ``\\`` exists inside the folder
has its reason say so (:data:`SEPARATOR_HINT`).

* FTA (failure to acquire, capture level): readable captures that did not decode or gave
  no usable ROI, divided by the readable captures in the protocol. They take part in no
  comparison; the FMR/FNMR reported are of the acquired captures.
* FTE (failure to enrol, identity level, ISO/IEC 19795-1): identities all of whose
  readable enrolment captures failed to acquire, divided by the identities with at least
  one readable enrolment capture. Enrolment captures are an identity's first-session
  captures (two-session protocol) or all its captures (all pairs); an identity without
  any is neither a failure nor an attempt.
* Rank-1: closed set. Two sessions: each probe against all references, ranked by
  identity; one session: each capture against all the others (leave one out). Only
  probes whose identity has a reference count (one session: another acquired capture of
  the same identity), and it needs competitors: with fewer than two enrolled identities
  (identities with an acquired reference) it is ``None``.

A measure without data is ``None`` (``n/a`` on screen), never 0: EER and FNMR at FMR
without genuine or impostor comparisons, rank-1 without a probe that has a reference or
with fewer than two enrolled identities, FTA / FTE without captures / identities, the
timings without acquired captures.
"""

from __future__ import annotations

import csv
import hashlib
import re
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
from identity.features import extract_features, feature_params
from identity.imageio import decode_image_offline, read_image_file
from identity.matcher import PreparedProbe, ReferenceSet, score_matrix
from identity.roi import DebugHook, RoiResult, extract_roi
from identity.template import Template

REQUIRED_COLUMNS = ("path", "identity", "session", "capture")
FMR_TARGETS = {"1e-3": 1e-3, "1e-4": 1e-4, "1e-5": 1e-5}
DET_FORMATS = frozenset({"png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif",
                         "tiff", "webp", "raw", "rgba"})
"""DET plot formats matplotlib writes without an external program (``pgf`` needs a LaTeX
installation and is left out)."""
FIRST_FEW = 10
"""Rows listed by name in the report's ``duplicate_first`` / ``unreadable_first``."""
UNUSED_REASON = ("captures of an identity's third and later sessions (natural order) "
                 "are not part of the two-session protocol")
SEPARATOR_HINT = " (the manifest uses '\\' separators: write paths with '/')"
"""Added to the reason of a missing file listed with ``\\`` whose ``/`` form exists."""
Progress = Callable[[str, int, int], None]
"""Called with (stage name, done, total) as the run advances."""


class ManifestError(IdentityError):
    """The folder or its manifest.csv is missing, unreadable or malformed."""

    code = "invalid_manifest"


@dataclass(frozen=True)
class Capture:
    """One manifest row; ``path`` is resolved against the manifest's folder, ``line`` is
    the row's line in manifest.csv (1 = header; 0 when not read from a file), ``folder``
    the manifest's folder (``None`` when not read from a file); neither is part of
    equality."""

    path: Path
    identity: str
    session: str
    capture: str
    line: int = field(default=0, compare=False)
    folder: Path | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Duplicate:
    """A manifest row dropped because an earlier row (``first_line``) of the same identity
    lists the same file (``same="file"``) or a byte-identical one (``same="content"``)."""

    line: int
    first_line: int
    path: str
    same: str = "file"


@dataclass(frozen=True)
class Manifest:
    """The usable rows of a manifest (file order, duplicates removed) and the dropped
    duplicate rows."""

    captures: list[Capture]
    duplicates: list[Duplicate] = field(default_factory=list)


@dataclass
class Acquired:
    """Templates of the captures that were acquired, the failures to acquire (path,
    reason: too large, decoded badly or no usable ROI), the unreadable rows (path,
    reason: the file could not be read, an OSError), ``readable``: the captures read
    and kept (acquired or failed, manifest order) and ``copies``: the captures dropped as
    byte-identical to an earlier one of their identity (only with ``drop_copies``)."""

    captures: list[Capture] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)
    extract_ms: list[float] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    readable: list[Capture] = field(default_factory=list)
    copies: list[Duplicate] = field(default_factory=list)


def natural_key(label: str) -> tuple[tuple[int, int, str, str], ...]:
    """Sort key ordering text with its numeric parts as numbers: ``"2" < "10"``,
    ``"s2" < "s10"``, ISO dates (``2024-01-05``) by date. Runs of ASCII digits compare
    by value (then by their text, so ``"01"`` and ``"1"`` stay distinct), other text
    case-insensitively (then by case); a number sorts before text at the same place.
    Values are compared without ``int()`` (its 4,300-digit limit): by the number of
    digits without leading zeros, then by those digits."""
    parts = re.split(r"([0-9]+)", label)
    return tuple(_number_key(p) if p.isascii() and p.isdigit() else (1, 0, p.casefold(), p)
                 for p in parts if p)


def _number_key(digits: str) -> tuple[int, int, str, str]:
    """The :func:`natural_key` part of a run of ASCII digits: equal-length digit strings
    without leading zeros compare as their values do."""
    value = digits.lstrip("0")
    return 0, len(value), value, digits


def read_manifest(folder: Path, limit_identities: int | None = None) -> list[Capture]:
    """The captures listed in ``folder/manifest.csv``, in file order, every row as listed
    (a file listed twice stays twice: :func:`load_manifest` is the evaluation's reading).

    Column names are matched case-insensitively with surrounding whitespace ignored, and
    values are stripped of surrounding whitespace. Blank rows (no field, or every field
    empty or whitespace, such as ``,,,,`` at the end of a spreadsheet export) are skipped;
    line numbers still count them. ``limit_identities`` keeps the first N identities in
    natural order (:func:`natural_key`: ``p2`` before ``p10``). Raises
    :class:`ManifestError` when the folder or file is missing, a required column is
    absent (the message names the columns found) or given twice, a row that is not
    blank has an empty field or a path that leaves the folder (:func:`manifest_path`),
    or no row is left.
    """
    return _limited(folder, _rows(folder), limit_identities)


def load_manifest(folder: Path, limit_identities: int | None = None) -> Manifest:
    """:func:`read_manifest` for the evaluation: a row naming the same file (resolved
    path) as an earlier row of the same identity is dropped and listed in
    :attr:`Manifest.duplicates` (an image is never compared with itself). Raises
    :class:`ManifestError` as :func:`read_manifest` does, and when the same file is
    listed under two identities (the labels contradict; the message names both lines).
    """
    rows, duplicates = _deduplicate(_rows(folder))
    rows = _limited(folder, rows, limit_identities)
    first = {r.line for r in rows}
    return Manifest(rows, [d for d in duplicates if d.first_line in first])


def _rows(folder: Path) -> list[Capture]:
    """Every row of ``folder/manifest.csv`` (see :func:`read_manifest` for the errors)."""
    manifest = folder / "manifest.csv"
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder")
    if not manifest.is_file():
        raise ManifestError(f"{manifest} does not exist")
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns = _columns(manifest, next(reader, []))
            return [_capture(folder, row, columns, n)
                    for n, row in enumerate(reader, start=2)
                    if any(v.strip() for v in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{manifest} cannot be read: {exc}") from exc


def _limited(folder: Path, rows: list[Capture], limit_identities: int | None
             ) -> list[Capture]:
    """The rows of the first ``limit_identities`` identities (natural order, as session
    labels); ManifestError when none is left."""
    if limit_identities is not None:
        keep = set(sorted({r.identity for r in rows}, key=natural_key)[:limit_identities])
        rows = [r for r in rows if r.identity in keep]
    if not rows:
        raise ManifestError(f"{folder / 'manifest.csv'} lists no captures")
    return rows


def _columns(manifest: Path, header: list[str]) -> dict[str, int]:
    """Position of each required column in ``header`` (names stripped, any case)."""
    names = [h.strip().casefold() for h in header]
    twice = sorted({c for c in REQUIRED_COLUMNS if names.count(c) > 1})
    if twice:
        raise ManifestError(f"{manifest} has the column(s) {', '.join(twice)} more than once")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        found = ", ".join(repr(h) for h in header) or "none"
        raise ManifestError(f"{manifest} lacks the column(s) {', '.join(missing)} "
                            f"(columns found: {found})")
    return {c: names.index(c) for c in REQUIRED_COLUMNS}


def _deduplicate(rows: list[Capture]) -> tuple[list[Capture], list[Duplicate]]:
    """Keep the first row of each file (resolved path); refuse a file under two identities."""
    first: dict[Path, Capture] = {}
    kept: list[Capture] = []
    dropped: list[Duplicate] = []
    for row in rows:
        key = _resolved(row.path)
        seen = first.get(key)
        if seen is None:
            first[key] = row
            kept.append(row)
        elif seen.identity != row.identity:
            raise ManifestError(
                f"manifest lines {seen.line} and {row.line} list the same file "
                f"{str(row.path)!r} under two identities ({seen.identity!r}, "
                f"{row.identity!r})")
        else:
            dropped.append(Duplicate(row.line, seen.line, str(row.path)))
    return kept, dropped


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop: compare as written
        return path.absolute()


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


def _capture(folder: Path, row: list[str], columns: dict[str, int], line: int) -> Capture:
    values = {c: (row[i] if i < len(row) else "").strip() for c, i in columns.items()}
    empty = [c for c, v in values.items() if not v]
    if empty:
        raise ManifestError(f"manifest line {line}: empty {', '.join(empty)}")
    try:
        path = manifest_path(folder, values["path"])
    except ManifestError as exc:
        raise ManifestError(f"manifest line {line}: {exc.reason}") from None
    return Capture(path, values["identity"], values["session"], values["capture"], line,
                   folder)


def _separator_hint(cap: Capture, exc: OSError) -> str:
    """:data:`SEPARATOR_HINT` when ``cap``'s file is missing, its manifest path has a
    ``\\`` and that path with ``/`` for ``\\`` is a file inside the folder (the rule of
    :func:`manifest_path`, so no hint ever points outside it); else ``""``."""
    if cap.folder is None or not isinstance(exc, FileNotFoundError):
        return ""
    try:
        written = str(cap.path.relative_to(cap.folder))
    except ValueError:
        return ""
    if "\\" not in written:
        return ""
    try:
        found = manifest_path(cap.folder, written.replace("\\", "/")).is_file()
    except (ManifestError, OSError):
        return ""
    return SEPARATOR_HINT if found else ""


def capture_roi(data: bytes, debug: DebugHook | None = None) -> RoiResult:
    """The pipeline's acquisition of one file's bytes: :func:`decode_image_offline` (at
    its default size) then :func:`identity.roi.extract_roi` (with ``debug``, see there).
    Raises InvalidImageError or AcquisitionError (a failure to acquire)."""
    return extract_roi(decode_image_offline(data), debug=debug)


def acquire(captures: list[Capture], progress: Progress | None = None, *,
            drop_copies: bool = False) -> Acquired:
    """Run read -> decode -> ROI -> features on each capture.

    A file that cannot be read (OSError from :func:`identity.imageio.read_image_file`:
    missing, no permission, a folder, a FIFO or device) goes to
    :attr:`Acquired.unreadable` (a missing file listed with ``\\`` separators says so,
    :data:`SEPARATOR_HINT`); one too large to read, an image that does not decode or
    gives no usable ROI to :attr:`Acquired.failures`. With ``drop_copies``, a non-empty
    file byte-identical to an earlier capture of the same identity is skipped and listed
    in :attr:`Acquired.copies`, and one byte-identical to a capture of another identity
    raises :class:`ManifestError`; nothing else is raised.
    """
    out = Acquired()
    first: dict[bytes, Capture] = {}
    for n, cap in enumerate(captures, start=1):
        try:
            data = read_image_file(cap.path)
        except OSError as exc:
            out.unreadable.append((str(cap.path), f"unreadable: {exc.strerror or exc}"
                                   f"{_separator_hint(cap, exc)}"))
        except InvalidImageError as exc:  # larger than the offline limit: read no further
            out.readable.append(cap)
            out.failures.append((str(cap.path), f"{exc.code}: {exc.reason}"))
        else:
            if not (drop_copies and data and _is_copy(cap, data, first, out)):
                out.readable.append(cap)
                _extract(cap, data, out)
        if progress is not None:
            progress("extract", n, len(captures))
    return out


def _is_copy(cap: Capture, data: bytes, first: dict[bytes, Capture], out: Acquired) -> bool:
    """Whether ``data`` repeats the bytes of an earlier capture (``first``: SHA-256 ->
    first capture) of the same identity, then listed in ``out.copies``. Raises
    ManifestError when the earlier capture is of another identity."""
    seen = first.setdefault(hashlib.sha256(data).digest(), cap)
    if seen is cap:
        return False
    if seen.identity != cap.identity:
        raise ManifestError(
            f"manifest lines {seen.line} and {cap.line} list byte-identical files "
            f"{str(seen.path)!r} and {str(cap.path)!r} under two identities "
            f"({seen.identity!r}, {cap.identity!r})")
    out.copies.append(Duplicate(cap.line, seen.line, str(cap.path), same="content"))
    return True


def _extract(cap: Capture, data: bytes, out: Acquired) -> None:
    """Decode -> ROI -> features of one capture's bytes into ``out`` (a template and its
    time, or a failure to acquire)."""
    try:
        start = time.perf_counter()
        found = capture_roi(data)
        template = extract_features(found.roi, feature_params(found.passthrough)).to_template()
        out.extract_ms.append((time.perf_counter() - start) * 1000.0)
        out.captures.append(cap)
        out.templates.append(template)
    except (InvalidImageError, AcquisitionError) as exc:
        out.failures.append((str(cap.path), f"{exc.code}: {exc.reason}"))


@dataclass(frozen=True)
class Plan:
    """Which captures the protocol uses and how (see the module docstring).

    ``used``: the captures compared, manifest order; ``references``: the paths of the
    enrolment captures among them (two sessions: each identity's first session; all
    pairs: every capture); ``paired``: two-session protocol (else all pairs);
    ``unused``: captures of later sessions; ``protocol``: a label for the report.
    """

    used: list[Capture]
    references: frozenset[Path]
    paired: bool
    unused: list[Capture]
    protocol: str


def plan(captures: list[Capture]) -> Plan:
    """Split ``captures`` by the per-identity session rule of the module docstring."""
    sessions: dict[str, set[str]] = {}
    for c in captures:
        sessions.setdefault(c.identity, set()).add(c.session)
    order = {i: sorted(s, key=natural_key) for i, s in sessions.items()}
    if all(len(s) < 2 for s in order.values()):
        return Plan(list(captures), frozenset(c.path for c in captures), False, [],
                    "all pairs")
    used, unused, refs = [], [], set()
    for c in captures:
        rank = order[c.identity].index(c.session)
        if rank >= 2:
            unused.append(c)
            continue
        used.append(c)
        if rank == 0:
            refs.add(c.path)
    pairs = sorted({(s[0], s[1]) for s in order.values() if len(s) >= 2})
    protocol = (f"session {pairs[0][0]} x session {pairs[0][1]}" if len(pairs) == 1
                else "each identity's first session x its second session")
    return Plan(used, frozenset(refs), True, unused, protocol)


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
    ``images`` (readable captures in the protocol), ``extract_ms_p50`` (milliseconds),
    ``compare_us_p50`` (microseconds) and details: ``protocol``, ``score_at_fmr``,
    ``failures`` (every failure to acquire: path, reason), ``captures_unused`` (count)
    and ``captures_unused_reason``, ``duplicate_rows`` (count, rows of the same file
    and byte-identical copies) and ``duplicate_first`` (up to :data:`FIRST_FEW`: line,
    first_line, path, same: ``"file"`` or ``"content"``), ``unreadable`` (count) and
    ``unreadable_first`` (up to :data:`FIRST_FEW`: path, reason); rates are fractions.
    ``eer`` and ``fnmr_at_fmr`` are ``None`` when genuine or impostor comparisons are
    missing, ``rank1`` when no probe has a reference of its identity or fewer than two
    identities are enrolled (see the module docstring). Raises :class:`ManifestError` on
    a bad folder or manifest, a file byte-identical to one of another identity, and when
    no capture of the protocol could be read.
    """
    manifest = load_manifest(folder, limit_identities)
    split = plan(manifest.captures)
    acquired = acquire(split.used, progress, drop_copies=True)
    if not acquired.readable:
        path, reason = acquired.unreadable[0]
        raise ManifestError(f"none of the {len(acquired.unreadable)} image(s) listed in "
                            f"{folder / 'manifest.csv'} could be read (first: {path}: "
                            f"{reason})")
    genuine, impostor, rank1 = _compare(acquired, split, progress)
    return Evaluation(_report(manifest, split, acquired, genuine, impostor, rank1),
                      genuine, impostor)


def _compare(
    acq: Acquired, split: Plan, progress: Progress | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float | None]:
    ids = np.array([c.identity for c in acq.captures], dtype=object)
    if not split.paired:
        probes = refs = np.arange(len(acq.captures))
    else:
        is_ref = np.array([c.path in split.references for c in acq.captures], dtype=bool)
        refs, probes = np.flatnonzero(is_ref), np.flatnonzero(~is_ref)
    scores = _matrix([acq.templates[i] for i in probes], [acq.templates[i] for i in refs],
                     progress)
    same = ids[probes][:, None] == ids[refs][None, :]
    if not split.paired:  # each pair once: the later capture is the probe
        pair = np.tril(np.ones_like(same, dtype=bool), k=-1)
        np.fill_diagonal(scores, -np.inf)  # leave one out for rank-1
        genuine, impostor = scores[pair & same], scores[pair & ~same]
    else:
        genuine, impostor = scores[same], scores[~same]
    enrolled = len(set(ids[refs]))
    rank1 = (ev.rank1_rate(scores, list(ids[probes]), list(ids[refs]))
             if scores.size and enrolled >= 2 else None)
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


def _report(manifest: Manifest, split: Plan, acq: Acquired,
            genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64],
            rank1: float | None) -> dict[str, Any]:
    readable = acq.readable
    duplicates = sorted([*manifest.duplicates, *acq.copies], key=lambda d: d.line)
    identities = {c.identity for c in readable}
    attempted = {c.identity for c in readable if c.path in split.references}
    enrolled = {c.identity for c in acq.captures if c.path in split.references}
    both = genuine.size > 0 and impostor.size > 0
    return {
        "protocol": split.protocol,
        "eer": ev.equal_error_rate(genuine, impostor) if both else None,
        "fnmr_at_fmr": {k: (ev.fnmr_at_fmr(genuine, impostor, f) if both else None)
                        for k, f in FMR_TARGETS.items()},
        "fnmr_at_fmr_note": ("null = no genuine or no impostor comparisons, or fewer "
                             "impostor comparisons than 1/FMR: not resolvable"),
        "score_at_fmr": {k: (ev.score_at_fmr(impostor, f) if impostor.size else None)
                         for k, f in FMR_TARGETS.items()},
        "rank1": rank1,
        "fta": ev.failure_rate(len(acq.failures), len(readable)),
        "fte": ev.failure_rate(len(attempted - enrolled), len(attempted)),
        "genuine_comparisons": int(genuine.size),
        "impostor_comparisons": int(impostor.size),
        "identities": len(identities),
        "images": len(readable),
        "extract_ms_p50": statistics.median(acq.extract_ms) if acq.extract_ms else None,
        "compare_us_p50": compare_time_us(acq.templates),
        "failures": [{"path": p, "reason": r} for p, r in acq.failures],
        "captures_unused": len(split.unused),
        "captures_unused_reason": UNUSED_REASON if split.unused else None,
        "duplicate_rows": len(duplicates),
        "duplicate_first": [{"line": d.line, "first_line": d.first_line, "path": d.path,
                             "same": d.same} for d in duplicates[:FIRST_FEW]],
        "unreadable": len(acq.unreadable),
        "unreadable_first": [{"path": p, "reason": r} for p, r in acq.unreadable[:FIRST_FEW]],
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


def det_formats() -> dict[str, str]:
    """The file extensions (lower case, no dot) of :data:`DET_FORMATS` that this
    matplotlib can write a figure as, each with its description: the formats
    :func:`write_det_plot` accepts (none needs an external program such as LaTeX)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return {ext: name for ext, name in FigureCanvasBase.get_supported_filetypes().items()
            if ext in DET_FORMATS}


def det_format_problem(path: Path) -> str | None:
    """Why ``path`` cannot take a DET plot (no extension, or one not among
    :func:`det_formats`, e.g. ``pgf``, which needs LaTeX); ``None`` when it can."""
    ext = path.suffix[1:].lower()
    if ext in det_formats():
        return None
    known = ", ".join(sorted(det_formats()))
    what = f"extension .{ext} is not" if ext else "a file name without an extension is not"
    return f"{what} a plot format (use one of: {known})"


def write_det_plot(genuine: npt.ArrayLike, impostor: npt.ArrayLike, path: Path,
                   title: str = "DET") -> None:
    """Draw the DET curve (FNMR against FMR on normal-deviate axes, ISO/IEC 19795-1)
    to ``path`` with matplotlib's Agg backend, in the format of its extension (PNG,
    PDF, SVG, ...: :func:`det_formats`; 500 x 500 pixels for raster formats).

    Raises :class:`identity.evaluation.MetricsInputError` on empty score lists,
    ValueError when the extension is not a format (:func:`det_format_problem`) and
    OSError when the file cannot be written.
    """
    problem = det_format_problem(path)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
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
        ax.set_title(title.replace("$", r"\$"))  # a folder name is no mathtext
        ax.grid(True, lw=0.5)
        fig.tight_layout()
        fig.savefig(path, dpi=100, format=path.suffix[1:].lower())
    finally:
        plt.close(fig)

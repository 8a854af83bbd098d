"""Decision threshold at N = 1M subjects: subject-level score rules on Tongji (issue 4).

Data: ``tongji-roi`` (``manifest.csv``: ``path,identity,session,capture,source``; 300
palms x 2 sessions x 10 captures). Every capture goes through the pipeline of
``storefront identity evaluate`` (:func:`identity.evaluate_run.acquire`: decode -> ROI
-> CompCode template) and the shift- and rotation-tolerant matcher
(:class:`identity.matcher.PreparedProbe`) scores every session-2 capture (probe)
against every session-1 capture (gallery: one subject per palm with its T = 10
session-1 templates). The (probes x templates) float32 score matrix is cached
(``--cache``, keyed by a hash of the templates and the matcher parameters).

Subject rules (:class:`identity.decision.SubjectRule`): the subject score of a probe is
the max of the subject's template scores (the service today), the mean of its k best,
or its k-th best. For each rule:

* Tail fit (tuning palms only, palm000-palm149): the subject-level impostor scores of
  every tuning probe (all 10 session-2 captures) against every other tuning subject
  (1500 x 149 = 223,500 subject comparisons) -> :func:`identity.decision.fit_fmr_tail`
  (``log10 FMR(t) = slope t + intercept`` where 3e-6 <= FMR <= 1e-2). FPIR model:
  ``FPIR(N) = 1 - (1 - FMR(t))^N ~ N FMR(t)`` (union bound; the N subject comparisons
  of a non-mated probe are assumed independent, the T templates of one subject need
  not be). Threshold: :func:`identity.decision.threshold_for_fpir` for the target FPIR
  (0.3 %, NIST IR 8271's reporting point) at N = 1M, with one comparison per subject.
  Uncertainty: 90 % interval of that threshold over a bootstrap of the tuning probe
  palms (resampled with replacement). Extrapolation depth: decades between the lowest
  measurable FMR (1 / impostor comparisons) and the FMR the threshold needs.
* FNIR (NIST IR 8271: the mated subject is not at rank 1 at or above the threshold) at
  that threshold, the gallery being all 300 subjects, for probes of the held-out palms
  (palm150-palm299) and of all 300, with the first session-2 capture of each palm as
  the probe (as in the service bench) and with all 10 (finer resolution). Also with the
  service's ambiguity margin (identified only if the mated subject leads the runner-up
  by ``params.AMBIGUITY_MARGIN``). Counts come with a 95 % Wilson interval.
* Checks: the tail refitted on the held-out palms alone (threshold it would give); the
  held-out impostor counts above the scores where the tuning fit predicts FMR 1e-4 and
  1e-5; the threshold from a fit over 1e-5 <= FMR <= 1e-2 only. Trade-off: the highest
  threshold (0.001 grid) that keeps the tuning FNIR (all captures) <= 2 %, the FPIR at
  1M there and the most subjects for which FPIR stays <= the target there; the FPIR at
  1M at ``params.IDENTIFY_THRESHOLD``.

Baseline (today's method, ``template_level_max``): the per-template impostor tail
(1500 x 1490 = 2,235,000 tuning comparisons) with ``N T FMR`` (T = 10).

Shortlist: fused rules need several templates of the mated subject re-scored. For each
genuine probe, the exact-score rank (among all 3000 templates) of the mated subject's
k-th best template, and whether the mated subject's k best templates (by exact score)
are all among the rows the small-gallery search of :class:`identity.index.PalmIndex`
re-scores (replicated here with FAISS on the clear codes: per stage of
:func:`identity.index.query_stages`, the ``params.SHORTLIST_SIZE`` distinct rows of
least Hamming distance to any of the stage's queries; the index's revocable transform
preserves these distances), after stage 1 and after all stages.

Run (data in ``$STOREFRONT_DATA_DIR``; ~7 min for the score matrix on one core, then
cached)::

    .venv/bin/python benchmarks/threshold_at_scale.py \
        --json benchmarks/results/threshold_at_scale.json
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from bench_report import print_and_save
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from identity import params
from identity.decision import SubjectRule, fit_fmr_tail, fpir, group_by_subject, threshold_for_fpir
from identity.evaluate_run import Capture, ManifestError, acquire, read_manifest
from identity.index import query_stages
from identity.matcher import PreparedProbe, ReferenceSet, translate
from identity.template import Template, code_nbytes, mask_nbytes

F64 = npt.NDArray[np.float64]
SET_NAME = "tongji-roi"
DEFAULT_JSON = Path(__file__).parent / "results" / "threshold_at_scale.json"
DEFAULT_CACHE = Path("/tmp/threshold_at_scale_scores.npz")
RULES = (SubjectRule(), SubjectRule("mean_top", 2), SubjectRule("mean_top", 3),
         SubjectRule("mean_top", 5), SubjectRule("kth", 2), SubjectRule("kth", 3),
         SubjectRule("kth", 5))
FNIR_LIMIT = 0.02  # issue 4: FNIR on tongji-roi <= 2 %
CHECK_FMRS = (1e-4, 1e-5)
BOOTSTRAP_SEED = 0
# Matcher and coder parameters that change scores; part of the cache key.
SCORE_PARAMS = ("FEATURE_GRID_SIZE", "FEATURE_WORK_SIZE", "GABOR_ORIENTATIONS",
                "GABOR_WAVELENGTH_PX", "GABOR_BANDWIDTH_OCTAVES", "GABOR_ASPECT",
                "FEATURE_ROTATIONS_DEG", "MATCH_MAX_SHIFT", "MATCH_MIN_OVERLAP")


@dataclass(frozen=True)
class Study:
    """The acquired captures and their scores.

    ``scores``: (P probes, M gallery templates) float32 in [0, 1]; ``probe_ids`` (P) and
    ``template_ids`` (M) are palm identities; ``probe_first`` (P) bool marks each palm's
    first session-2 capture; ``probes`` / ``gallery``: the templates.
    """

    scores: npt.NDArray[np.float32]
    probe_ids: list[str]
    template_ids: list[str]
    probe_first: npt.NDArray[np.bool_]
    probes: list[Template]
    gallery: list[Template]
    failures: list[tuple[str, str]]


@contextmanager
def _progress() -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        yield bar


def _acquire(captures: list[Capture], bar: Progress) -> tuple[list[Capture], list[Template],
                                                              list[tuple[str, str]]]:
    task = bar.add_task("extract", total=len(captures))
    acq = acquire(captures, lambda _stage, done, _total: bar.update(task, completed=done))
    return acq.captures, acq.templates, acq.failures + acq.unreadable


def _cache_key(probes: list[Template], gallery: list[Template]) -> str:
    h = hashlib.sha256()
    for t in (*probes, *gallery):
        h.update(t.code)
        h.update(t.mask)
    h.update(repr([(p, getattr(params, p)) for p in SCORE_PARAMS]).encode())
    return h.hexdigest()


def _score(probes: list[Template], gallery: list[Template], bar: Progress
           ) -> npt.NDArray[np.float32]:
    refs = ReferenceSet.from_templates(gallery)
    chunks = [np.arange(s, min(s + 128, len(refs))) for s in range(0, len(refs), 128)]
    parts = [refs.take(rows) for rows in chunks]  # 128 rows: measured fastest per probe
    out = np.zeros((len(probes), len(gallery)), np.float32)
    task = bar.add_task("score", total=len(probes))
    for i, p in enumerate(probes):
        prepared = PreparedProbe(p)
        for rows, part in zip(chunks, parts, strict=True):
            out[i, rows] = prepared.scores(part)
        bar.update(task, completed=i + 1)
    return out


def load(palms: Path, cache: Path | None) -> Study:
    """Acquire every capture of ``palms`` and score session 2 against session 1.

    Raises :class:`ManifestError` on a bad folder or manifest, or when it has no
    sessions "1" and "2".
    """
    captures = sorted(read_manifest(palms), key=lambda c: (c.identity, c.session, c.capture))
    if not {"1", "2"} <= {c.session for c in captures}:
        raise ManifestError(f"{palms} needs sessions 1 and 2")
    with _progress() as bar:
        got, templates, failures = _acquire([c for c in captures if c.session in "12"], bar)
        gal = [(c, t) for c, t in zip(got, templates, strict=True) if c.session == "1"]
        prb = [(c, t) for c, t in zip(got, templates, strict=True) if c.session == "2"]
        probes, gallery = [t for _, t in prb], [t for _, t in gal]
        key = _cache_key(probes, gallery)
        scores = None
        if cache is not None and cache.is_file():
            stored = np.load(cache)
            if str(stored["key"]) == key:
                scores = stored["scores"]
        if scores is None:
            scores = _score(probes, gallery, bar)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, key=np.array(key), scores=scores)
    first: dict[str, int] = {}
    for i, (c, _) in enumerate(prb):
        first.setdefault(c.identity, i)
    is_first = np.zeros(len(prb), bool)
    is_first[list(first.values())] = True
    return Study(scores, [c.identity for c, _ in prb], [c.identity for c, _ in gal], is_first,
                 probes, gallery, failures)


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval [low, high] of the proportion k / n (Wilson 1927)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 5), round(min(1.0, centre + half), 5)]


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"misses": k, "probes": n, "fnir": round(k / n, 5) if n else None,
            "wilson95": wilson(k, n)}


def identification_misses(subject: F64, own: npt.NDArray[np.intp], threshold: float,
                          margin: float = 0.0) -> npt.NDArray[np.bool_]:
    """Mated probes that are not identified: (P,) bool.

    ``subject``: (P, S) subject scores; ``own``: (P,) column of each probe's mated
    subject. A miss: the mated score is below ``threshold``, or another subject scores
    at least as high (not rank 1; ties count as misses), or (``margin`` > 0) leads it by
    less than ``margin`` (the service's "ambiguous").
    """
    rows = np.arange(len(own))
    mated = subject[rows, own]
    others = subject.copy()
    others[rows, own] = -np.inf
    runner = others.max(axis=1)
    return np.asarray((mated < threshold) | (runner >= mated) | (mated - runner < margin),
                      dtype=bool)


def _impostors(matrix: npt.NDArray[Any], probe_ids: npt.NDArray[np.str_],
               column_ids: npt.NDArray[np.str_], palms: list[str]) -> list[F64]:
    """Per probe palm of ``palms``: its impostor scores against the columns of ``palms``.

    ``matrix``: (P, C) scores; ``probe_ids`` (P) and ``column_ids`` (C) palm ids. Each
    list item: (captures x (C' - own columns),) float64.
    """
    cols = np.isin(column_ids, palms)
    sub, ids = matrix[:, cols], column_ids[cols]
    out = []
    for palm in palms:
        rows = probe_ids == palm
        out.append(np.asarray(sub[rows][:, ids != palm], dtype=np.float64).ravel())
    return out


def _bootstrap(per_palm: list[F64], gallery: int, target: float, templates: int,
               reps: int) -> list[float] | None:
    """90 % interval of the fitted threshold over a bootstrap of the tuning probe palms.

    ``per_palm``: the impostor scores of each tuning probe palm's captures; each
    replicate draws as many palms with replacement and refits the tail.
    """
    if reps < 1 or not per_palm:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    out = []
    for _ in range(reps):
        pick = rng.integers(0, len(per_palm), len(per_palm))
        try:
            slope, intercept = fit_fmr_tail(np.concatenate([per_palm[i] for i in pick]))
            out.append(threshold_for_fpir(target, gallery, templates, slope, intercept))
        except ValueError:
            continue
    if not out:
        return None
    return [round(float(np.percentile(out, 5)), 4), round(float(np.percentile(out, 95)), 4)]


def _fnir_table(subject: F64, own: npt.NDArray[np.intp], first: npt.NDArray[np.bool_],
                held: npt.NDArray[np.bool_], threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for probes, which in (("first_capture", first), ("all_captures", np.ones_like(first))):
        for split, rows in (("held_out", which & held), ("all", which)):
            miss = identification_misses(subject[rows], own[rows], threshold)
            amb = identification_misses(subject[rows], own[rows], threshold,
                                        params.AMBIGUITY_MARGIN)
            out.setdefault(probes, {})[split] = {
                **_rate(int(miss.sum()), int(rows.sum())),
                "with_margin": _rate(int(amb.sum()), int(rows.sum()))}
    return out


def _threshold_at_fnir(subject: F64, own: npt.NDArray[np.intp], rows: npt.NDArray[np.bool_],
                       limit: float) -> float:
    """Highest threshold (0.001 grid) whose FNIR over ``rows`` is <= ``limit``."""
    best = 0.0
    for t in np.arange(0.0, 1.0, 0.001):
        if identification_misses(subject[rows], own[rows], float(t)).mean() <= limit:
            best = float(t)
        else:
            break
    return best


def analyse_rule(name: str, subject: F64, fit_per_palm: list[F64], impostor_held: F64,
                 templates: int, ctx: dict[str, Any], args: argparse.Namespace
                 ) -> dict[str, Any]:
    """The tail fit, threshold at scale, its checks and the FNIR for one subject rule.

    ``subject``: (P, S) subject scores under the rule (identification uses them);
    ``fit_per_palm``: the tuning impostor comparisons the tail is fitted on, per tuning
    probe palm (subject or template level); ``impostor_held``: the held-out ones (checks
    only); ``templates``: comparisons per subject in the FPIR model (1 for a
    subject-level tail, T for the template-level baseline).
    """
    n, target = args.gallery_subjects, args.target_fpir
    impostor_fit = np.concatenate(fit_per_palm)
    slope, intercept = fit_fmr_tail(impostor_fit)
    threshold = threshold_for_fpir(target, n, templates, slope, intercept)
    fmr_needed = -math.expm1(math.log1p(-target) / (n * templates))
    lowest = 1.0 / impostor_fit.size
    h_slope, h_intercept = fit_fmr_tail(impostor_held)
    checks = {}
    for f in CHECK_FMRS:
        at = (math.log10(f) - intercept) / slope
        checks[f"{f:g}"] = {"score": round(at, 4), "expected": round(f * impostor_held.size, 1),
                            "observed": int((impostor_held >= at).sum())}
    own, tune, first, held = ctx["own"], ctx["tune"], ctx["first"], ctx["held"]
    at_fnir = _threshold_at_fnir(subject, own, tune, FNIR_LIMIT)
    lo_slope, lo_intercept = fit_fmr_tail(impostor_fit, low=1e-5)
    return {
        "rule": name,
        "fit": {"slope": round(slope, 3), "intercept": round(intercept, 4),
                "impostor_comparisons": int(impostor_fit.size),
                "impostor_max": round(float(impostor_fit.max()), 4),
                "lowest_measurable_fmr": lowest},
        "threshold": round(threshold, 4),
        "threshold_bootstrap90": _bootstrap(fit_per_palm, n, target, templates, args.bootstrap),
        "threshold_if_fit_from_fmr_1e-5": round(
            threshold_for_fpir(target, n, templates, lo_slope, lo_intercept), 4),
        "fmr_needed_per_comparison": fmr_needed,
        "extrapolation_decades": round(math.log10(lowest / fmr_needed), 2),
        "held_out_check": {
            "refit_slope": round(h_slope, 3), "refit_intercept": round(h_intercept, 4),
            "refit_threshold": round(threshold_for_fpir(target, n, templates, h_slope,
                                                        h_intercept), 4),
            "impostor_comparisons": int(impostor_held.size),
            "impostor_max": round(float(impostor_held.max()), 4),
            "impostors_above_tuning_fit_fmr": checks},
        "fnir": _fnir_table(subject, own, first, held, threshold),
        "tuning_threshold_at_fnir_2pct": round(at_fnir, 3),
        "fpir_at_1m_at_that_threshold": round(fpir(at_fnir, n, templates, slope, intercept), 5),
        "max_gallery_subjects_at_that_threshold": max_gallery(at_fnir, target, templates, slope,
                                                              intercept),
        "fpir_at_1m_at_identify_threshold": round(fpir(
            params.IDENTIFY_THRESHOLD, n, templates, slope, intercept), 5),
    }


def max_gallery(threshold: float, target: float, templates: int, slope: float,
                intercept: float) -> int:
    """Most subjects N with estimated FPIR(threshold, N) <= ``target`` (see
    :func:`identity.decision.fpir`): N = log(1 - target) / (T log(1 - FMR))."""
    fmr = min(10.0 ** (slope * threshold + intercept), 0.5)
    return int(math.log1p(-target) / (templates * math.log1p(-fmr)))


def _stage_rows(probe: Template, index: faiss.IndexBinaryFlat, shortlist: int
                ) -> list[npt.NDArray[np.int64]]:
    """Rows the small-gallery staged search re-scores, per stage (see module docstring)."""
    n_code, n_mask = code_nbytes(probe.grid), mask_nbytes(probe.grid)
    variants = [Template(probe.grid, probe.code[v * n_code:(v + 1) * n_code],
                         probe.mask[v * n_mask:(v + 1) * n_mask])
                for v in range(probe.rotation_variants)]  # as the index: rotations only
    out = []
    for stage in query_stages(probe.rotation_variants):
        q = np.stack([np.frombuffer(translate(variants[v], dy, dx).reference_code, np.uint8)
                      for v, dy, dx in stage])
        dist, labels = index.search(q, shortlist)
        order = np.argsort(dist.ravel(), kind="stable")
        rows = labels.ravel()[order]
        _, first = np.unique(rows, return_index=True)
        out.append(rows[np.sort(first)][:shortlist])
    return out


def shortlist_study(study: Study, ks: tuple[int, ...]) -> dict[str, Any]:
    """Exact-score rank of the k-th best mated template and whether the k best mated
    templates are all re-scored by the staged search (stage 1 / all stages)."""
    gallery_ids = np.asarray(study.template_ids)
    codes = np.stack([np.frombuffer(t.reference_code, np.uint8) for t in study.gallery])
    index = faiss.IndexBinaryFlat(8 * codes.shape[1])
    index.add(codes)
    ranks: dict[int, list[int]] = {k: [] for k in ks}
    within: dict[int, list[tuple[bool, bool]]] = {k: [] for k in ks}
    for i, probe in enumerate(study.probes):
        s = study.scores[i].astype(np.float64)
        mated = np.flatnonzero(gallery_ids == study.probe_ids[i])
        best = mated[np.argsort(-s[mated], kind="stable")]
        stages = _stage_rows(probe, index, params.SHORTLIST_SIZE)
        stage1, every = set(stages[0].tolist()), set(np.concatenate(stages).tolist())
        for k in ks:
            if k > len(best):
                continue
            ranks[k].append(int((s > s[best[k - 1]]).sum()) + 1)
            top = set(best[:k].tolist())
            within[k].append((top <= stage1, top <= every))
    out = {}
    for k in ks:
        r, w = np.asarray(ranks[k]), np.asarray(within[k])
        out[f"k{k}"] = {
            "probes": int(r.size),
            "rank_of_kth_mated_template": {"median": float(np.median(r)),
                                           "p95": float(np.percentile(r, 95)),
                                           "max": int(r.max())},
            "rank_within_50": round(float((r <= 50).mean()), 4),
            "rank_within_150": round(float((r <= 150).mean()), 4),
            "top_k_rescored_stage1": round(float(w[:, 0].mean()), 4),
            "top_k_rescored_all_stages": round(float(w[:, 1].mean()), 4)}
    return out


def run(args: argparse.Namespace, study: Study | None = None) -> dict[str, Any]:
    """Analyse every rule on ``study`` (loaded or scored from ``args.palms`` when None);
    returns the JSON report."""
    if study is None:
        study = load(args.palms, args.cache)
    palms = sorted(set(study.template_ids))
    if not 0 < args.tuning_palms < len(palms):
        raise ValueError(f"--tuning-palms must leave held-out palms (of {len(palms)})")
    tune_palms = palms[: args.tuning_palms]
    grouped, subjects = group_by_subject(study.scores, study.template_ids)
    column = {s: j for j, s in enumerate(subjects)}
    probe_ids, tid = np.asarray(study.probe_ids), np.asarray(study.template_ids)
    own = np.array([column[p] for p in study.probe_ids], dtype=np.intp)
    tune = np.isin(probe_ids, tune_palms)
    held_palms = palms[args.tuning_palms:]
    ctx: dict[str, Any] = {"own": own, "tune": tune, "held": ~tune, "first": study.probe_first}
    t_per = int(grouped.shape[2])
    # Baseline (today): per-template tail, N x T comparisons, max rule.
    rows = [analyse_rule(
        "template_level_max", SubjectRule().fuse(grouped),
        _impostors(study.scores, probe_ids, tid, tune_palms),
        np.concatenate(_impostors(study.scores, probe_ids, tid, held_palms)), t_per, ctx, args)]
    sid = np.asarray(subjects)
    for rule in RULES:
        subject = rule.fuse(grouped)
        rows.append(analyse_rule(
            rule.name, subject, _impostors(subject, probe_ids, sid, tune_palms),
            np.concatenate(_impostors(subject, probe_ids, sid, held_palms)), 1, ctx, args))
    return {
        "data": SET_NAME, "probes": len(study.probes), "gallery_templates": len(study.gallery),
        "subjects": len(subjects), "templates_per_subject": t_per,
        "tuning_palms": f"{tune_palms[0]}-{tune_palms[-1]}",
        "held_out_palms": f"{palms[args.tuning_palms]}-{palms[-1]}"
        if len(palms) > args.tuning_palms else None,
        "failures": [{"path": p, "reason": r} for p, r in study.failures],
        "target_fpir": args.target_fpir, "gallery_subjects_at_scale": args.gallery_subjects,
        "fnir_limit": FNIR_LIMIT, "ambiguity_margin": params.AMBIGUITY_MARGIN,
        "fit_range_fmr": [3e-6, 1e-2], "bootstrap_reps": args.bootstrap,
        "rules": rows,
        "shortlist": {"shortlist_size": params.SHORTLIST_SIZE,
                      "gallery_templates": len(study.gallery),
                      **shortlist_study(study, (1, 2, 3, 5))},
    }


def table(report: dict[str, Any]) -> str:
    """The summary table: rule, fit, threshold, FNIR (first capture / all captures)."""
    head = (f"{'rule':<20} {'slope':>8} {'icpt':>7} {'thr':>7} {'thr 90% boot':>15} "
            f"{'decades':>7} {'FNIR 1st held/all':>18} {'FNIR 10 held/all':>17} "
            f"{'FPIR1M@FNIR2%':>13} {'N max':>7}")
    lines = [head]
    for r in report["rules"]:
        f1, f10 = r["fnir"]["first_capture"], r["fnir"]["all_captures"]
        boot = r["threshold_bootstrap90"]
        lines.append(
            f"{r['rule']:<20} {r['fit']['slope']:>8.2f} {r['fit']['intercept']:>7.3f} "
            f"{r['threshold']:>7.4f} {str(boot):>15} {r['extrapolation_decades']:>7.2f} "
            f"{100 * f1['held_out']['fnir']:>8.2f}/{100 * f1['all']['fnir']:<6.2f}   "
            f"{100 * f10['held_out']['fnir']:>7.2f}/{100 * f10['all']['fnir']:<6.2f}   "
            f"{100 * r['fpir_at_1m_at_that_threshold']:>10.3f} % "
            f"{r['max_gallery_subjects_at_that_threshold']:>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table and the JSON, save it; 0 also when skipped, 1 on error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    data = os.environ.get("STOREFRONT_DATA_DIR", "")
    parser.add_argument("--palms", type=Path,
                        default=Path(data) / "palm" / SET_NAME if data else None,
                        help=f"the {SET_NAME} folder ($STOREFRONT_DATA_DIR/palm/{SET_NAME})")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the report here")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="score-matrix cache (.npz; outside the repository)")
    parser.add_argument("--tuning-palms", type=int, default=150,
                        help="the first N palms (sorted) tune; the rest are held out")
    parser.add_argument("--gallery-subjects", type=int, default=1_000_000)
    parser.add_argument("--target-fpir", type=float, default=params.TARGET_FPIR)
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates")
    args = parser.parse_args(argv)
    if args.palms is None or not (args.palms / "manifest.csv").is_file():
        where = "STOREFRONT_DATA_DIR is not set" if args.palms is None else (
            f"{args.palms / 'manifest.csv'} does not exist")
        print(f"SKIPPED: {where} (the {SET_NAME} data set is needed)", file=sys.stderr)
        return 0
    try:
        report = run(args)
    except (ManifestError, ValueError) as exc:
        print(f"threshold_at_scale: {exc}", file=sys.stderr)
        return 1
    print_and_save(report, args.json)
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

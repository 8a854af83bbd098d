"""Settings of the identity service (environment prefix ``STOREFRONT_IDENTITY_``).

Built by the composition root, never at import time. Defaults come from
:mod:`identity.params`, where their measurements are recorded.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from identity import params


class IdentitySettings(BaseSettings):
    """Decision thresholds and limits of :class:`identity.service.IdentityService`.

    ``identify_threshold`` (the lowest decision threshold, used as such for small
    galleries) and ``ambiguity_margin`` are matcher scores in [0, 1]; ``target_fpir`` is
    the false-positive identification rate (fraction) the decision threshold is raised
    to hold as the gallery grows (:func:`identity.decision.gallery_threshold`);
    ``shortlist_size`` is in templates; ``rescore_subjects`` is how many of the index's
    best subjects get the fused second-stage score (:meth:`IdentityService._search`);
    ``min_enrolment_captures`` in usable captures; ``max_templates_per_subject`` bounds the
    stored templates of one person (and so the second stage's work per identification);
    ``faiss_threads`` is FAISS's OpenMP thread count (process-wide, set by the service);
    ``index_coarse_from`` is the gallery size (templates) from which the index's FAISS
    stage scans pooled codes (:mod:`identity.index`).
    """

    model_config = SettingsConfigDict(env_prefix="STOREFRONT_IDENTITY_", env_file=".env",
                                      extra="ignore", frozen=True)

    identify_threshold: float = Field(default=params.IDENTIFY_THRESHOLD, gt=0.0, le=1.0)
    ambiguity_margin: float = Field(default=params.AMBIGUITY_MARGIN, ge=0.0, le=1.0)
    # Bounded so the grown threshold stays a usable score (< 0.6 up to 10^9 subjects).
    target_fpir: float = Field(default=params.TARGET_FPIR, ge=1e-9, le=0.1)
    shortlist_size: int = Field(default=params.SHORTLIST_SIZE, ge=1, le=100_000)
    # >= 2: the decision needs the runner-up subject's fused score for its margin.
    rescore_subjects: int = Field(default=params.RESCORE_SUBJECTS, ge=2, le=1000)
    min_enrolment_captures: int = Field(default=params.MIN_ENROLMENT_CAPTURES, ge=1, le=100)
    max_enrolment_captures: int = Field(default=20, ge=1, le=100)
    max_templates_per_subject: int = Field(default=params.MAX_TEMPLATES_PER_SUBJECT, ge=1,
                                           le=1000)
    faiss_threads: int = Field(default=params.FAISS_THREADS, ge=1, le=256)
    index_coarse_from: int = Field(default=params.INDEX_COARSE_FROM, ge=1)

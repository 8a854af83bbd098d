"""Every tuned constant of shelf-weight inference, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InferenceParams:
    """Constants of change detection and explanation (grams, seconds, samples).

    - ``median_window``: samples of the moving median that removes spikes (odd, >= 1).
    - ``stable_window_s`` / ``stable_range_g``: a shelf is stable when, over this window, every
      plate's filtered weight stays within this range; a change is the difference between the
      levels of two stable stretches; on a noisy plate the range widens to
      ``stable_range_sigmas`` x its estimated noise sigma.
    - ``min_level_s``: a stable stretch shorter than this (a hand pressing steadily for a
      moment) is not a level; the changes on either side of it merge.
    - ``level_window_s`` / ``level_guard_s``: a stable stretch's level is the median of up to
      this long a stretch next to the change, skipping this guard at the stretch's edge (a
      hand touching lightly before it is seen as unstable). A few seconds: the median of more
      samples is less noisy and barely moved by a light touch at the stretch's edge, while
      drift over that time is a fraction of a gram.
    - ``plate_change_g``: a plate whose level moved by more than this took part in a change.
    - ``min_change_g``: smaller group totals are ignored (below the lightest product's half).
    - ``tol_abs_g`` + ``tol_rel`` x expected weight: tolerance of an explanation; it grows with
      the number and weight of units (package-to-package weight spread).
    - ``max_units``: most units one change may involve.
    - ``extra_unit_prior`` / ``extra_product_prior``: prior odds per extra unit / distinct
      product, so that the simplest explanation is preferred.
    - ``plate_tol_g``: tolerance of the per-plate fit: weight on a changed plate that the
      hypothesis' units cannot rest on (sigma = ``plate_tol_g`` / ``tolerance_sigmas``).
    - ``off_facing_prior``: prior odds per product whose units rest off its facing plates
      (a misplaced unit of a product stocked nearby); ``off_facing_decay``: its factor per
      plate farther than a neighbour, for a single unit of a product stocked farther along
      the same shelf (a unit drifted sideways, or a facing wider than the planogram says).
    - ``misplaced_pick_prior`` / ``misplaced_put_back_prior``: prior odds, shared by every
      product of the store not stocked near the change, that one unit of it was misplaced
      there (put-backs are misplaced far more often than picks come from a wrong place).
    - ``held_put_back_prior``: prior odds that a put-back is a unit of a product the session
      picked (it may be put down anywhere); ``not_held_prior``: odds factor of a put-back of
      a product the session never picked (a pick missed, or one before the session).
    - ``unknown_prior`` / ``unknown_range_g``: the "none of these" hypothesis (an item not in
      the planogram, a personal item): prior odds and a flat weight density over this range.
    - ``max_plates_checked``: changes spanning more changed plates skip the per-plate fit.
    - ``min_confidence``: below it a change goes to review instead of the receipt.
    - ``merge_window_s``: an unexplained change is merged with the next change on overlapping
      plates within this time (a hand pressing, then taking); a merged change of about zero
      (a resting hand, an object set down and lifted) is dropped.
    """

    median_window: int = 5
    stable_window_s: float = 0.4
    stable_range_g: float = 8.0
    stable_range_sigmas: float = 3.5
    min_level_s: float = 0.8
    level_window_s: float = 3.0
    level_guard_s: float = 0.1
    plate_change_g: float = 6.0
    min_change_g: float = 12.0
    tol_abs_g: float = 6.0
    tol_rel: float = 0.02
    max_units: int = 4
    extra_unit_prior: float = 0.05
    extra_product_prior: float = 0.2
    tolerance_sigmas: float = 2.5
    plate_tol_g: float = 8.0
    off_facing_prior: float = 0.02
    off_facing_decay: float = 0.5
    misplaced_pick_prior: float = 0.01
    held_put_back_prior: float = 0.3
    not_held_prior: float = 0.2
    misplaced_put_back_prior: float = 0.3
    unknown_prior: float = 0.01
    unknown_range_g: float = 2000.0
    max_plates_checked: int = 8
    min_confidence: float = 0.9
    merge_window_s: float = 15.0

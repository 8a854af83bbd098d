"""Every tuned constant of the palm pipeline, in one place.

Each constant says where its value came from (paper, standard, or measurement).
"""

from __future__ import annotations

# --- ROI (owned by identity/roi.py) ---------------------------------------

# --- features, matching, identification (owned by features/matcher/service) --

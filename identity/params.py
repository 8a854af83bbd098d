"""Every tuned constant of the palm pipeline, in one place.

Each constant says where its value came from (paper, standard, or measurement).
"""

from __future__ import annotations

# --- ROI (owned by identity/roi.py) ---------------------------------------

# Output ROI side (px): the 128 x 128 of the Tongji and PolyU ROI sets.
ROI_SIZE = 128
# Smaller inputs are a failure to acquire (px, either side).
ROI_MIN_INPUT_SIDE = 32
# Pass-through test (roi.looks_like_roi), measured on the real sets: every Tongji
# (6000) and PolyU-MS ROI (240) passes; no whole-hand image (PolyU-MS hand aspect 1.22,
# dark fraction >= 0.25; COEP, NIR, phone hands aspect 1.33, dark >= 0.56) does.
ROI_PASSTHROUGH_MAX_ASPECT = 1.15
ROI_ANALYSIS_SIDE = 128  # px, the image is shrunk to this for the test
ROI_ANALYSIS_BLUR_SIGMA = 2.0  # px at ROI_ANALYSIS_SIDE
ROI_DARK_LEVEL_OF_P90 = 0.5  # "dark" = below this fraction of the 90th percentile level
ROI_PASSTHROUGH_MAX_DARK_FRACTION = 0.2  # Tongji max 0.16
ROI_TEXTURE_SIGMA = 3.0  # px, high-pass = image - Gaussian(sigma)
ROI_PASSTHROUGH_MIN_TILE_TEXTURE = 0.8  # grey levels; Tongji/PolyU ROI tiles >= 1.2
# Contrast: ROIs whose 1st..99th percentile range is below ROI_MIN_DYNAMIC_RANGE grey
# levels are stretched to ROI_NORMALISED_RANGE.
ROI_MIN_DYNAMIC_RANGE = 64.0
ROI_NORMALISED_RANGE = 128.0
# Quality gate. Too dark: mean grey level below ROI_MIN_MEAN_LEVEL (Tongji ROI means >= 78).
ROI_MIN_MEAN_LEVEL = 40
# Saturated: more than ROI_MAX_SATURATED_FRACTION of the pixels at >= ROI_SATURATION_LEVEL.
ROI_SATURATION_LEVEL = 250
ROI_MAX_SATURATED_FRACTION = 0.25
# Blurred: variance of the Laplacian of the (normalised) 128 px ROI below this
# (grey levels^2); Tongji ROIs measure >= 10.6; a Gaussian blur of sigma 3 px on the
# synthetic palms was refused for 7 of 8 (the eighth measured 13.6).
ROI_MIN_SHARPNESS = 4.0
# Hand segmentation (Otsu on a Gaussian blur) runs on a copy whose longer side is this (px).
ROI_SEGMENT_MAX_SIDE = 320
ROI_SEGMENT_BLUR_SIGMA = 2.0  # px at ROI_SEGMENT_MAX_SIDE
# "No hand found": largest bright region below this fraction of the image, or palm
# inscribed-circle radius below this fraction of the shorter image side.
ROI_MIN_HAND_AREA_FRACTION = 0.05
ROI_MIN_PALM_RADIUS_FRACTION = 0.08
# Distance-transform values within this fraction of the maximum count as a tie; the
# palm centre is the centroid of the tied ridge (PolyU palms span the whole frame).
ROI_CENTRE_TIE_FRACTION = 0.98
# "Palm out of frame": the ROI square would stick out of the image by more than this
# fraction of its side (smaller overflows shift the square inside the frame).
ROI_MAX_OUT_OF_FRAME = 0.15
# Fingers: mask parts removed by an opening with a disc of ROI_FINGER_OPENING x palm
# radius, farther than ROI_FINGER_MIN_DISTANCE x radius from the centre, at least
# ROI_MIN_FINGER_AREA x radius^2 px in all (else the finger valleys are used).
ROI_FINGER_OPENING = 0.7
ROI_FINGER_MIN_DISTANCE = 1.1
ROI_MIN_FINGER_AREA = 0.1
# Finger valleys: convexity defects deeper than ROI_VALLEY_MIN_DEPTH x radius; the
# largest group within ROI_VALLEY_GROUP_DEG of each other gives the direction.
ROI_VALLEY_MIN_DEPTH = 0.15
ROI_VALLEY_GROUP_DEG = 45.0
# ROI square side = ROI_SIDE_PER_RADIUS x inscribed radius (~sqrt 2: the square
# inscribed in the palm circle).
ROI_SIDE_PER_RADIUS = 1.4
# The image is pre-shrunk (area) to this multiple of the final ROI scale before warping.
ROI_PRESHRINK_HEADROOM = 1.5

# --- features, matching, identification (owned by features/matcher/service) --

# Feature grid: CompCode orientation is coded on a GRID_SIZE x GRID_SIZE grid of the ROI.
# 32 x 32 cells x 3 bits = 3072 code bits (a multiple of 8, as FAISS binary indexes need).
FEATURE_GRID_SIZE = 32
# The ROI is resized to this side (pixels) before Gabor filtering.
FEATURE_WORK_SIZE = 64
# CompCode (Kong & Zhang, ICPR 2004): six real (even) Gabor filters at j*pi/6.
GABOR_ORIENTATIONS = 6
# Wavelength of the Gabor carrier, in pixels of the FEATURE_WORK_SIZE image (tuned below).
GABOR_WAVELENGTH_PX = 5.0
# Half-amplitude bandwidth in octaves; kappa = sqrt(2 ln 2) (2^d + 1) / (2^d - 1) (Lee 1996).
GABOR_BANDWIDTH_OCTAVES = 2.0
# Envelope aspect (cross-carrier / along-carrier sigma); 0.5 as in Kong & Zhang's filter.
GABOR_ASPECT = 0.5
# A cell is invalid (masked) when the local grey-level std (work resolution, box of
# MASK_WINDOW_PX) is below MASK_MIN_LOCAL_STD, or its mean is saturated.
MASK_WINDOW_PX = 5
MASK_MIN_LOCAL_STD = 1.5
MASK_SATURATED_LOW = 5.0
MASK_SATURATED_HIGH = 250.0
# Matching: best normalised Hamming distance over translations of +-MATCH_MAX_SHIFT
# cells in each direction, counting only bits valid in both masks; a translation
# needs at least MATCH_MIN_OVERLAP of all code bits valid in both (else it is skipped).
MATCH_MAX_SHIFT = 3
MATCH_MIN_OVERLAP = 0.5
# Identification (service decision rule; score = matcher.distance_to_score, in [0, 1]).
# Measured on Tongji (all 300 palms; probes = first 2 session-2 captures, references =
# all 10 session-1 captures; 1,794,000 impostor / 6,000 genuine template comparisons):
#   per-comparison FMR 1e-3 at score 0.194, 1e-4 at 0.221, 1e-5 at 0.258; impostor max 0.298.
#   Subject level (best of 10 templates): at 0.30, 0 of 179,400 impostor subject
#   comparisons pass (FMR < 1.7e-5 per subject, rule of three) and 98.3 % of genuine do.
# End to end through IdentityService (decode -> ROI -> CompCode -> index; /tmp script,
# 200 palms enrolled with their 10 session-1 captures = 2000 templates, defaults below):
# of 2000 session-2 probes 1956 identified, 44 not identified, 0 ambiguous, 0 wrong;
# 500 probes of the 100 non-enrolled palms: 0 identified; identify p50 7.7 ms, p95 9.1 ms.
IDENTIFY_THRESHOLD = 0.30
# Identified only if the best subject beats the runner-up subject by this much.
AMBIGUITY_MARGIN = 0.02
# FAISS shortlist size (templates) that is re-scored exactly.
SHORTLIST_SIZE = 50
MIN_ENROLMENT_CAPTURES = 1
# The FAISS shortlist is the union of the SHORTLIST_SIZE nearest templates (plain Hamming)
# to the probe translated by each (dy, dx) in SHORTLIST_QUERY_SHIFTS^2 cells. Measured
# (200 Tongji palms x 10 session-1 templates, first session-2 probe each): the best genuine
# template was missed by the unshifted query alone in 11/200 probes at size 100, and by
# the 9 translated queries in 0/200 at sizes 50, 100 and 200.
SHORTLIST_QUERY_SHIFTS = (-2, 0, 2)

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
# Oblong ROIs (roi._oblong_roi_square): a frame up to this aspect whose whole area is palm
# (no dark background, texture in every tile) passes through as its centred square. A
# newcomer's test set of Tongji ROIs resized to 160 x 128 px (aspect 1.25) failed 92-95 %
# as whole hands ("fingers closed ...") and the rest gave EER 50 %; the whole-hand sets
# (aspect 1.22-1.33) all have a dark background and never reach the texture test. Below
# 4:3 (1.333), the shape of most hand photos: a hand on light paper with a faint grain
# (benchmarks/roi_light_background.py) has texture in every tile too and was taken for a
# ROI at 1.5 (nir-contactless-hand on paper 245: EER 15 -> 28 %).
ROI_OBLONG_MAX_ASPECT = 1.3
ROI_ANALYSIS_SIDE = 128  # px, the image is shrunk to this for the test
ROI_ANALYSIS_BLUR_SIGMA = 2.0  # px at ROI_ANALYSIS_SIDE
ROI_DARK_LEVEL_OF_P90 = 0.5  # "dark" = below this fraction of the 90th percentile level
ROI_PASSTHROUGH_MAX_DARK_FRACTION = 0.2  # Tongji max 0.16
ROI_TEXTURE_SIGMA = 3.0  # px, high-pass = image - Gaussian(sigma)
ROI_PASSTHROUGH_MIN_TILE_TEXTURE = 0.8  # grey levels; Tongji/PolyU ROI tiles >= 1.2
# A square frame with no dark background and texture missing in some tile is tried as a
# hand on a light, flat background (roi._hand_on_flat_background) only when its 1st..99th
# percentile range is at least this many grey levels; else it fails as "blurred or low
# contrast". A
# newcomer's Tongji ROIs squeezed to 8 grey levels (113-121) failed 89 % as "blurred" and
# the rest were cut as whole hands out of palm texture (EER 64 %). Real Tongji ROIs span
# about 40 levels (their texture fills every tile, so they never get here); paper and
# skin differ by far more than 24.
ROI_HAND_MIN_RANGE = 24.0
# Palm texture of a pass-through (roi_quality.orientation_coherence: energy-weighted
# coherence of the structure tensor, Bigun & Granlund 1987, Sobel gradients of the
# ROI_ANALYSIS_SIDE copy integrated with a Gaussian of ROI_COHERENCE_SIGMA px): below
# ROI_MIN_ORIENTATION_COHERENCE the ROI fails to acquire ("no palm texture"). Measured
# 2026-12-01 over every image (benchmarks/roi_texture.py, results/roi_texture.json):
# minimum Tongji 0.289 (6000), PolyU-MS ROI bands 0.311 (240), the same sets shrunk to
# 64 px (a coarser unseen sensor) 0.237 / 0.331, synthetic palms 0.474 (1728); uniform
# and Gaussian white noise at most 0.140 (30 each, 64-200 px), checkerboards of 2-8 px
# squares <= 0.133. Noise blurred with sigma 1 px reaches 0.22 (half of it passes), with
# sigma 2 to 8 px maxima 0.37 to 0.86: smooth noise is locally a ramp, as coherent as a palm,
# and the faintest Tongji ROIs score no higher, so no orientation threshold refuses it
# without refusing real palms (the sharpness gate refuses the low-contrast ones).
# Straight stripes score ~1 and pass. 0.18 is 38 % below the lowest real ROI (24 %
# below the 64 px ones) and 29 % above white noise; it costs 0.35-0.54 ms per ROI (p50,
# one thread, measured at load average 3-11 on the 2 cores).
# Pass-throughs only: a whole-hand ROI comes from a segmented hand with finger valleys
# (its ROIs measure >= 0.255 all the same; drawn test hands have noise texture).
ROI_COHERENCE_SIGMA = 4.0  # px at ROI_ANALYSIS_SIDE
ROI_MIN_ORIENTATION_COHERENCE = 0.18
# Contrast: ROIs whose 1st..99th percentile range is below ROI_MIN_DYNAMIC_RANGE grey
# levels are stretched to ROI_NORMALISED_RANGE.
ROI_MIN_DYNAMIC_RANGE = 64.0
ROI_NORMALISED_RANGE = 128.0
# Quality gate. Too dark: mean grey level below ROI_MIN_MEAN_LEVEL (Tongji ROI means >= 78).
ROI_MIN_MEAN_LEVEL = 40
# Saturated: more than ROI_MAX_SATURATED_FRACTION of the pixels at >= ROI_SATURATION_LEVEL.
# 0.5 = 1 - MATCH_MIN_OVERLAP: the features mask saturated cells, and a capture with at
# most half of its ROI saturated can still be compared with a clean one over the
# matcher's minimum overlap. Was 0.25; on nir-contactless-hand (tuning half, palm nir1
# over-exposed in the palm centre) 0.25 refused 3 of 20 captures (saturated 26, 40,
# 53 %) at EER 0 %, 0.5 refuses 1 (53 %) at EER 2.3 %.
ROI_SATURATION_LEVEL = 250
ROI_MAX_SATURATED_FRACTION = 0.5
# Blurred: variance of the Laplacian of the (normalised) 128 px ROI below this
# (grey levels^2); Tongji ROIs measure >= 10.6; a Gaussian blur of sigma 3 px on the
# synthetic palms was refused for 7 of 8 (the eighth measured 13.6).
ROI_MIN_SHARPNESS = 4.0
# Hand segmentation (Otsu on a Gaussian blur) runs on a copy whose longer side is this (px).
ROI_SEGMENT_MAX_SIDE = 320
ROI_SEGMENT_BLUR_SIGMA = 2.0  # px at ROI_SEGMENT_MAX_SIDE
# Light background (roi_segment._otsu): when more than this fraction of the image border
# lies in Otsu's bright class, the hand is the darker class (a hand on white paper or a
# light table) and the negative is segmented. Measured 2026-12-02 on the tuning halves of
# the dark-background sets (fraction of the blurred working copy's border above Otsu's
# level; median / max): polyu-ms-nir-hand 0.149 / 0.286 (a palm filling the frame of a
# contact scanner), coep-hand 0.054 / 0.106, contactless-phone-hand 0.050 / 0.085,
# nir-contactless-hand 0.046 / 0.163; a hand on a light background leaves only its wrist
# or sleeve on the border (the drawn test hands: 0.9 and more). 0.5 lies far from both.
ROI_LIGHT_BACKGROUND_BORDER = 0.5
# Finger valleys are looked for on the hand outline at a lower level
# (roi_segment.outline_hand): this fraction of the way from the background class mean
# up to Otsu's level. Measured on the tuning halves (EER polyu-ms-nir-hand / nir-
# contactless-hand): 0.5 -> 2.0 / 4.4 %, 0.4 -> 0.84 / 5.0 %, 0.35 -> 0.56 / 8.3 %,
# 0.3 -> 1.8 / 5.0 % (coep and phone unchanged); at 0.5 the dim finger roots next to a
# scanner's peg come loose from the palm and the ring-little gap is lost.
ROI_OUTLINE_LEVEL = 0.4
# Thin bright structures (the rims of a scanner's pegs) are removed from the outline by
# an opening with a disc of this fraction of the shorter image side.
ROI_OUTLINE_OPENING = 0.03
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
# Finger valleys (identity/roi_keypoints.find_valleys): minima of the contour's distance
# from the palm centre (smoothed over ROI_VALLEY_SMOOTH x radius contour steps) whose dip
# is at least ROI_VALLEY_MIN_DEPTH x palm radius deep, at most ROI_VALLEY_MAX_DISTANCE x
# radius from the palm centre.
ROI_VALLEY_SMOOTH = 0.05
ROI_VALLEY_MIN_DEPTH = 0.15
ROI_VALLEY_MAX_DISTANCE = 2.0
# Gap opening direction: contour points this many palm radii (in contour steps) either side.
ROI_VALLEY_ARM = 0.3
# Key pair (index-middle, ring-little gaps), identity/roi_pairs.pair_cost. Hard limits
# (a pair breaking one is not plausible; each deviation / its limit adds to the cost):
# both gaps open within ROI_KEY_MAX_OPENING_DEG of the key line's normal away from the
# palm centre, their spread is at most ROI_KEY_MAX_SPREAD_DEG, that normal lies within
# ROI_KEY_MAX_SKEW_DEG of the gaps' mean opening and within ROI_KEY_MAX_TURN_DEG of the
# finger direction; both gaps lie at least ROI_KEY_MIN_HEIGHT x d on the finger side of
# the palm centre; key distance d = ROI_KEY_DISTANCE x palm radius within a factor
# exp(+-LOG_TOLERANCE); palm centre ROI_KEY_CENTRE_DEPTH x d (+- tolerance) below the key
# line and at most ROI_KEY_MAX_LATERAL x d from its bisector. A third valley (middle-ring
# gap, or the peg of a contact scanner) is required within ROI_KEY_MIDDLE_ALONG x d of
# the midpoint along the line and between the two ROI_KEY_MIDDLE_ACROSS x d across it
# (positive = finger side); its misfit adds to the cost (ROI_KEY_NO_MIDDLE_COST = none
# found: the pair is dropped). A pair with two gaps between it, or one beyond
# ROI_KEY_MIDDLE_ACROSS[1] x d, skips a finger gap and is dropped (thumb web pairs).
# Measured on the tuning halves with the chosen pairs (10th / 50th / 90th percentile):
# d/r 1.04 / 1.10 / 1.16 (PolyU), 1.00 / 1.03 / 1.12 (phone), 1.04 / 1.08 / 1.14 (NIR);
# depth 0.77 / 0.83 / 0.89, 1.06 / 1.15 / 1.27, 0.82 / 0.88 / 1.11; lateral within
# +-0.23 x d. Tighter limits (depth 1.0 +- 0.35, d/r log 0.2, lateral 0.35) raised the
# EER on the tuning halves (PolyU 4.2 -> 5.0 %, NIR 4.4 -> 10.3 %): kept loose. The
# PolyU gaps are wedges that fan out, so their openings differ by up to ~110 degrees:
# ROI_KEY_MAX_OPENING_DEG 60 -> 80 and ROI_KEY_MAX_TURN_DEG 45 -> 60 took the PolyU
# tuning-half EER from 10.1 % to 4.2 % (the finger direction of a frame-filling palm
# is poor); gating the key frame on the finger direction (15 or 25 degrees) mixed key
# and fallback frames within a palm and raised every EER (PolyU 17-28 %).
ROI_KEY_MAX_OPENING_DEG = 80.0
ROI_KEY_MAX_SPREAD_DEG = 115.0
ROI_KEY_MAX_SKEW_DEG = 30.0
ROI_KEY_MAX_TURN_DEG = 60.0
ROI_KEY_MIN_HEIGHT = 0.2
ROI_KEY_DISTANCE = 1.1
ROI_KEY_DISTANCE_LOG_TOLERANCE = 0.45
ROI_KEY_CENTRE_DEPTH = 1.05
ROI_KEY_CENTRE_DEPTH_TOLERANCE = 0.65
ROI_KEY_MAX_LATERAL = 0.7
ROI_KEY_MIDDLE_ALONG = 0.25
ROI_KEY_MIDDLE_ACROSS = (-0.2, 0.6)
ROI_KEY_NO_MIDDLE_COST = 2.5
# A whole hand (roi._whole_hand: at least ROI_WHOLE_HAND_FINGERS fingers seen whole on
# the Otsu mask, at most ROI_WHOLE_HAND_MAX_CUT cut by the border there, and no more cut
# on the outline than on the mask; roi_keypoints.fingers_in_view) places the ROI on the
# inscribed circle of the Otsu mask, not on the key points (which are only reported).
# Measured on the tuning halves: key frames on every whole hand gave coep-hand 18-27 %
# EER (fingers pressed against pegs close the index-middle or middle-ring gap in some
# captures, so key and fallback frames mix within a palm) against 2.7 % with the circle;
# contactless-phone-hand 0 % (key frames with the radius-blended unit below) against
# 2.3 %: the circle is kept for all whole hands (COEP: 40 tuning palms, phone: 4).
# Counting the fingers on the outline alone mixed the regimes within nir-contactless-
# hand palms (EER 33 %). Four fingers, not five, since 2026-12: a thumb lying against
# the index finger makes one part with it (COEP). Only parts on the finger side count
# (ROI_FINGER_SIDE_DEG): a sleeve or band leaving the frame at the wrist is no cut
# finger. Allowing one cut finger on the outline as well (instead of "no more than on
# the mask") let the faint finger tips of nir-contactless-hand frames (4-5 fingers whole
# on the mask, 1-3 cut on the outline in the tuning half) take the whole-hand regime
# and mixed the regimes there again (first held-out measurement, see benchmarks/README).
ROI_WHOLE_HAND_FINGERS = 4
ROI_WHOLE_HAND_MAX_CUT = 1
# Finger parts (connected parts of the finger pixels) whose direction from the palm
# centre lies more than this from the finger direction are on the wrist side: not
# counted as fingers (roi_keypoints.fingers_in_view) and left out of the finger
# direction (roi_keypoints.finger_direction). Measured on the tuning halves (angle of
# each part's centroid from the finger direction): fingers and thumbs 0-82 degrees,
# wrist bands and sleeves at the border 151-177. With it coep-hand (tuning half) went
# from 2.67 to 2.22 % EER (a band at the border had turned the finger direction).
ROI_FINGER_SIDE_DEG = 120.0
# The shallower key gap's depth (relative to the deepest valley) lowers the cost with
# this weight: finger gaps are deeper than thumb-web and border notches.
ROI_KEY_DEPTH_WEIGHT = 2.0
# Pairs are tried best fit first; the first whose ROI square lies in the frame and on
# the hand is used (at most this many; none fitting is a failure to acquire).
ROI_KEY_MAX_PAIRS_TRIED = 4
# Finger direction from the valley openings (roi_keypoints.opening_direction, when no
# finger pixels show): valleys whose openings lie within ROI_OPENING_GROUP_DEG of each
# other form a group; the deepest group's mean opening is the direction.
ROI_OPENING_GROUP_DEG = 45.0
# ROI square from the palm's inscribed circle (roi_keypoints.circle_frame): side
# ROI_CIRCLE_SIDE x radius, centre ROI_CIRCLE_SHIFT x radius towards the fingers.
# Measured on the tuning halves (coep-hand / contactless-phone-hand EER, FTA of phone):
# shift 0 -> 2.22 / 2.31 % (1 of 35 "palm out of frame"), 0.1, 0.15 and 0.2 -> 1.78 /
# 2.18 % (none), 0.3 -> 1.78 / 2.86 %, -0.15 -> 1.78 / 2.62 % (3 of 35); side 1.2 ->
# 3.11 / 5.84 %, 1.6 -> 1.78 / 0 % but 3 of 35 out of frame. Small sets: one COEP
# genuine pair is 0.44 % of EER.
ROI_CIRCLE_SIDE = 1.4
# Fingers (roi_keypoints.finger_direction): parts removed by an opening with a disc of
# ROI_FINGER_OPENING x palm radius, farther than ROI_FINGER_MIN_DISTANCE x radius from
# the centre, at least ROI_MIN_FINGER_AREA x radius^2 px in all.
ROI_FINGER_OPENING = 0.7
ROI_FINGER_MIN_DISTANCE = 1.1
ROI_MIN_FINGER_AREA = 0.1
ROI_CIRCLE_SHIFT = 0.15
# Tangent refinement: gap contour points within this x d of each valley bottom.
ROI_KEY_TANGENT_REACH = 0.3
# ROI square in the palm frame: side ROI_KEY_SIDE x d, its top edge ROI_KEY_OFFSET x d
# below the key line, centred on the origin along the line. Measured against the
# official PolyU-MS ROIs (polyu-ms-roi-bands, palms 1-10, located in the raw
# polyu-ms-nir-hand frames by template matching; benchmarks/roi_placement.py) in the
# frame of our tangent key points (111 of 120 frames keyed): centre 0.560 x d below the
# key line (IQR 0.544..0.584), -0.009 x d along it (IQR -0.025..0.004), side 0.765 x d
# (IQR 0.746..0.794), angle within 2.3 degrees (median): the official ROI is this
# square (side 0.765, top edge 0.560 - 0.765 / 2 = 0.178), used until 2026-12-02.
# Since 2026-12-02 the square keeps the official centre (0.5605 x d below the key line)
# but is larger: more palm in the 128 px ROI. Side chosen on the polyu-ms-nir-hand tuning
# half only (benchmarks/roi_halves.py split; /tmp study of the fused score, 1,794 genuine
# / 87,906 impostor comparisons; FTA 1 of 600 at every side), EER / mean of the 50 lowest
# genuine scores minus the impostor score at FMR 1e-3 / genuine scores below the impostor
# score at FMR 1e-4 plus 0.03 / d':
#   side 0.70    0.005 % / -      / -  / -
#   side 0.765   0.002 % / +0.060 / 9  / 5.22   (the official ROI)
#   side 0.825   0.000 % / (margin of the 20 lowest +0.046, against +0.045 at 0.765)
#   side 0.85    0.000 % / +0.072 / 1  / 5.49
#   side 0.875   0.000 % / +0.079 / 0  / 5.60   (adopted)
#   side 0.90    0.000 % / +0.074 / 3  / 5.59
#   side 0.95    0.001 % / (margin of the 20 lowest +0.064)
#   centre moved by -0.04 / +0.04 x d at side 0.875: margin of the 20 lowest +0.057 /
#   +0.066 against +0.067: the official centre kept.
# nir-contactless-hand tuning half (2 palms, 81 genuine / 90 impostor comparisons: one
# comparison is 1.1-1.2 %): EER 1.17 % (1 of 20 saturated) at 0.765, 0 % at 0.85, 2.1 %
# at 0.875, 1.06 % at 0.90, none saturated at the larger sides. Whole hands (coep-hand,
# contactless-phone-hand) place their square by the inscribed circle
# (roi_keypoints.circle_frame: side ROI_CIRCLE_SIDE x radius about the same centre) and
# do not change. The scale variants (FEATURE_REFINE_SCALES_LOCATED) re-checked at 0.875:
# none 0.002 % / +0.070 / 4, 0.95-1.05 0.000 % / +0.079 / 1, 0.90-1.10 0.000 % / +0.076
# / 0: 0.93-1.07 kept.
ROI_KEY_SIDE = 0.875
ROI_KEY_OFFSET = 0.123
# The unit of the key-point frame (roi_keypoints.key_unit) is the geometric mean of the
# key distance d and ROI_KEY_RADIUS_RATIO x the palm radius r (weight
# ROI_KEY_RADIUS_WEIGHT on the latter), so a key point that slid along its gap moves the
# scale half as much. PolyU frames (contact scanner, fixed scale) of one palm, tuning
# half: within-palm log-std of d 2.4 % (worst 11.6 %), of r 1.3 % (8.9 %), of the blend
# 1.4 % (6.1 %); scale was the main error of the lowest genuine PolyU scores. Median
# d / r of the tangent points there: 1.35 (so the blend equals d on PolyU and the
# official-ROI fit above holds). Tuning-half EER with weight 0 / 0.3 / 0.5 / 0.7:
# polyu-ms-nir-hand 0.83 / 0.39 / 0.39 / 0.56 %, nir-contactless-hand 7.6 / 2.3 / 2.3 /
# 0 % (20 captures of 2 palms).
ROI_KEY_RADIUS_RATIO = 1.35
ROI_KEY_RADIUS_WEIGHT = 0.5
# "No palm found": under this fraction of the ROI square lies on the hand mask.
ROI_MIN_ON_HAND = 0.9
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
# Wavelength of the Gabor carrier, in pixels of the FEATURE_WORK_SIZE image. Tuned on
# Tongji palm000-palm149 only (session 1 x session 2, every 2nd session-1 capture,
# +-3 cell shifts, no rotations): EER 0.61 % at 4 px, 0.64 % at 5 px, 0.75 % at 6.5 px.
GABOR_WAVELENGTH_PX = 4.0
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
# Rotation variants (degrees, counter-clockwise; the first must be 0): the code is also
# computed for the ROI rotated by each angle, and a probe matches with its best variant.
# Tuned on Tongji palm000-palm149 only (same protocol as the wavelength, 4 px):
#   rotations    none   +-3    +-4.5  +-6    0,+-3,+-6  0,+-4.5,+-9  -9..9 step 3
#   EER %        0.61   0.26   0.16   0.17   0.17       0.16         0.16
#   FNMR@1e-5 %  4.37   1.93   2.13   2.55   1.61       2.07         1.61
# Three variants: the comparison cost grows with the variant count, and more bought
# no EER. Also measured and not kept (no gain on palm000-149): local contrast
# normalisation before the Gabor bank (EER 0.68 -> 0.76 % at 128 px work size),
# BOCV sign bits (1.15 %), ordinal code (1.00 %), mean fusion of 4 px and 6.5 px
# CompCode (0.147 % with rotations, but FNMR@1e-5 2.8 %), probe scale search +-7 %.
FEATURE_ROTATIONS_DEG = (0.0, -4.5, 4.5)
# Refinement offsets (dy, dx), in cells: each rotation variant is also pooled with its cell
# grid moved by these (identity/cells.py; the ROI moved by half a cell, without filtering
# again), and the fused matcher refines its best whole-cell alignment with them
# (identity/matcher.py). Chosen 2026-12-01 on Tongji palm000-palm149 only
# (benchmarks/probe_variants.py, fused score, 1,500 x 1,500 captures, 15,000 genuine /
# 2,235,000 impostor comparisons), EER / FNMR at FMR 1e-5:
#   pipeline before (3 rotations, whole-cell shifts)                 0.100 % / 0.89 %
#   + half-cell offsets of the unrotated code, searched at all shifts 0.125 % / 0.75 %
#   + half-cell offsets of every rotation, at all shifts (4 x cost)   0.082 % / 0.45 %
#   + the same, only at the 3 x 3 shifts around the best whole-cell
#     alignment of the best rotation (adopted: ~1.2 x cost)           0.080 % / 0.47 %
#   probe scale 0.95 / 1.05 added to the rotations                    0.127 % / 0.84 %
FEATURE_REFINE_OFFSETS_CELLS = ((0.5, 0.0), (0.0, 0.5), (0.5, 0.5))
# Sheared refinement variants (2026-12-01, late evening): each rotation's response maps are
# also pooled on its cell grid sheared about the ROI centre, x' = x + s * y for each s
# below (rows slide sideways in proportion to their height: the skew of a palm tilted
# towards or away from a contactless sensor), and the fused matcher scores them with the
# half-cell variants at the 3 x 3 shifts around the best whole-cell alignment
# (identity/cells.pool_warped samples the maps' cell means at the moved cell centres; no
# second filtering). Why: every one of the 30 lowest genuine scores of the tuning palms is
# palm068, whose two sessions differ by a skew (ROIs sheared by 0.1 before coding took its
# mean genuine score from 0.198 to 0.322; scale changes did not help it). Chosen on Tongji
# palm000-palm149 only (/tmp study of the fused score, 1,500 x 1,500 captures, 15,000
# genuine / 2,235,000 impostor comparisons), EER / FNMR at FMR 1e-5:
#   the pipeline before (half-cell refinement only)                      0.087 % / 0.45 %
#   ROI warped and coded again per shear (too slow: 2 more filterings per rotation):
#     x-shear +-0.05 / +-0.08 / +-0.12        0.053 / 0.047 / 0.053 % and 0.29 / 0.23 / 0.25 %
#     x- and y-shear +-0.08                   0.047 % / 0.23 %
#     x or y scale 0.95 / 1.05                0.079 % / 0.35 %
#   cell means sampled on the sheared grid (this code), x-shear
#     +-0.05 (adopted: lowest EER)            0.052 % / 0.30 %
#     +-0.08 / +-0.12                         0.060 / 0.060 % and 0.26 / 0.29 %
#     +-0.08 with each orientation's response taken at the sheared line direction
#       (linear interpolation between orientations)   0.060 % / 0.27 %
FEATURE_REFINE_SHEARS = (0.05, -0.05)
# Scaled refinement variants for ROIs this pipeline located in a whole hand (2026-12-01, night;
# identity.features.LOCATED_FEATURE_PARAMS; not for pass-through ROIs): each rotation's
# response maps are also pooled on its cell grid scaled by these factors about the ROI
# centre (identity/cells.pool_warped), refined like the sheared variants. Why: the ROI's
# scale is our own estimate from the key points and the palm radius (ROI_KEY_RADIUS_WEIGHT
# above: within-palm spread of PolyU frames 1.4 %, worst 6.1 %), and scale was the main
# error of the lowest genuine whole-hand scores. Chosen on the tuning halves of the
# whole-hand sets (benchmarks/roi_halves.py split; /tmp study of the fused score over each
# half's protocol), EER / FNMR at FMR 1e-4 / mean of the 5 lowest genuine scores minus the
# impostor score at FMR 1e-3:
#   polyu-ms-nir-hand tuning (1,794 genuine / 87,906 impostor comparisons)
#     no scale variants                  0.009 % / 0.28 % / +0.013
#     scales 0.95, 1.05                  0.007 % / 0.06 % / +0.029
#     scales 0.93, 1.07 (adopted)        0.002 % / 0 %    / +0.032
#     scales 0.90, 1.10                  0.008 % / 0.11 % / +0.024
#     scales 0.88, 0.94, 1.06, 1.12      0.002 % / 0 %    / +0.030 (2 more variants)
#   coep-hand tuning: EER 1.78 % without, with 0.95 / 1.05 and with 0.93 / 1.07; 1.33 % with
#     0.90 / 1.10 (one comparison of 225)
#   nir-contactless-hand tuning: EER 2.35 % -> 1.17 % with 0.93-1.07 (one comparison)
#   contactless-phone-hand tuning: EER 2.75 % -> 2.86 % (one comparison of 139)
#   tongji-roi palm000-149 (ROIs, where it does not apply): EER 0.052 % -> 0.055 %
#   with 0.93-1.07, 0.053 % with 0.95-1.05: no gain where the set fixed the scale.
FEATURE_REFINE_SCALES_LOCATED = (0.93, 1.07)
# Matching: best normalised Hamming distance over translations of +-MATCH_MAX_SHIFT
# cells in each direction, counting only bits valid in both masks; a translation
# needs at least MATCH_MIN_OVERLAP of all code bits valid in both (else it is skipped).
# Measured and not kept (2026-11-30, /tmp scripts on Tongji; tuning palm000-149 first, the
# held-out palms only for the one candidate that won there; impostors = each session-2
# capture against the first session-1 capture of the 149 other palms, 223,500):
#   - block-wise local alignment after the global shift (8 x 8-cell blocks, each moved by
#     +-1 cell on its own, the "nonlinear matching" of pixel-to-area schemes): tuning EER
#     0.121 -> 0.033 %, FNMR@1e-5 1.17 -> 0.26 %, but held out 0.087 -> 0.120 % and
#     0.78 -> 1.12 % (same impostor sample): the tuning gain was one deformed palm
#     (palm068, 40 of the 48 genuine tuning scores below 0.19), and the extra freedom
#     raised impostor scores everywhere else;
#     4 x 4-cell or 16 x 16-cell blocks, +-2 cells, or a mean with the global distance were
#     no better on the tuning half;
#   - probe-only masking of the 5 / 15 / 30 % least decided cells (smallest gap between the
#     two strongest orientations, or weakest response range): tuning EER 0.127 / 0.140 /
#     0.152 % (range: 0.147 %) against 0.121 %;
#   - Gabor wavelength 3.5 / 4.5 px, bandwidth 1.5 / 2.5 octaves, aspect 0.35 / 0.7, work
#     size 96 / 128 px at the same relative wavelength, shifts +-2 / +-4: tuning EER 0.13-0.21 %.
# Adopted (benchmarks/ordinal_fusion.py, 2026-11-30): OrdinalCode (Sun et al., CVPR 2005;
# 128 px work image, Gaussian dx 3 / dy 1 px, 3 orientations, one sign bit per cell, see
# identity/ordinal.py) fused with this CompCode (0.6 / 0.4 weighted mean of the distances,
# one alignment for both codes, identity/matcher.py), chosen on palm000-149 only: tuning EER
# 0.120 -> 0.101 %, FNMR@1e-5 1.25 -> 0.76 %; held out 0.080 -> 0.072 % and 0.69 -> 0.30 %
# (sampled impostors). Templates carry both codes (identity/template.py format version 3).
MATCH_MAX_SHIFT = 3
MATCH_MIN_OVERLAP = 0.5
# OrdinalCode (identity/ordinal.py) and its score fusion with CompCode (identity/matcher.py),
# the candidate benchmarks/ordinal_fusion.py picked on Tongji palm000-palm149 only
# (results/ordinal_fusion.json "chosen": setting w128_s3x1_k2.5, mode joint, w_comp 0.6).
# Work image side (px) the ROI is resized to before filtering.
ORDINAL_WORK_SIZE = 128
# Gaussian lobe sigmas along / across the filter orientation, in ROI pixels (scaled by
# work size / ROI side onto the work image), and the kernel half-side factor (half-side =
# ceil(factor * sigma_long in work px)). Orientations 0, pi/6, pi/3 (Sun et al.).
ORDINAL_SIGMA_LONG_PX = 3.0
ORDINAL_SIGMA_SHORT_PX = 1.0
ORDINAL_KERNEL_FACTOR = 2.5
# Weight of the CompCode differing bits in the fused distance (the ordinal ones get 1 - it):
# d = min over alignments of (w * diff_comp + (1 - w) * diff_ord) / jointly valid bits.
FUSION_WEIGHT_COMPCODE = 0.6
# Identification (service decision rule; score = the fused CompCode + OrdinalCode score of
# identity.matcher (fused=True), in [0, 1]; a subject scores its best template).
# Measured on Tongji palm000-palm149 only (benchmarks/fused_threshold_at_scale.py score
# cache: all 1,500 session-2 captures against the 10 session-1 templates of every tuning
# palm; 223,500 impostor / 1,500 genuine subject comparisons): impostor subject max 0.228;
# at 0.23 / 0.24 / 0.25 / 0.26, 0 impostor subject comparisons pass and 99.8 / 99.4 / 98.9 /
# 98.4 % of genuine do (with the half-cell refinement, 2026-12-01: impostor subject max
# still 0.228, and with the sheared refinement too (21:15 UTC) still 0.228,
# benchmarks/results/fused_threshold_at_scale.json). 0.25 keeps the distance
# above the tuning impostor maximum that
# the CompCode floor had (0.28 against a CompCode maximum of 0.262; same rule, fixed before
# the held-out palms were looked at). The threshold grows with the gallery from this
# floor (decision.gallery_threshold: 0.25 up to ~19,000 persons, 0.2832 at 1M).
IDENTIFY_THRESHOLD = 0.25
# Identified only if the best subject beats the runner-up subject by this much.
AMBIGUITY_MARGIN = 0.02
# FAISS shortlist size (templates) that is re-scored exactly.
SHORTLIST_SIZE = 50
# Second stage of a 1:N search (IdentityService._search): the index ranks subjects by their
# best CompCode score (it holds only CompCode rows, within the 512-byte budget of issue 4);
# this many of the best subjects are scored again with the fused score against every
# stored template of theirs (decrypted for the call), and the decision is made on those
# fused scores. Measured (fused_threshold_at_scale.py cache, all 3,000 Tongji session-2
# probes): every mated subject that passes the fused 1M threshold (2,923 probes) has a
# CompCode subject score >= 0.295, where the CompCode subject tail expects 0.19 impostor
# subjects of a 1M gallery at or above 0.29: 5 keeps such a subject among the re-scored
# ones with room to spare, at ~5 x templates-per-person decryptions per identification.
# With the half-cell refinement (2026-12-01, same cache re-made) the fused score lifts some
# mated subjects whose CompCode score is lower: 2,963 pass the 1M threshold, the lowest at a
# CompCode subject score of 0.231 (25 below 0.295); by the CompCode subject tail, 2.5 of the
# 2,963 would expect 5 or more impostor subjects above them in a 1M gallery, i.e. be left
# out of the re-scored 5 (not identified, never misidentified): ~0.08 % of FNIR at 1M.
RESCORE_SUBJECTS = 5
# Stored templates one person may have (enrolments beyond it are refused: delete the palm
# and enrol again). Bounds the second stage at RESCORE_SUBJECTS x this many decryptions and
# fused comparisons per identification (5 x 20 = 100, ~2x the first stage's exact
# re-scoring of 50 templates); the second stage also reads at most this many per subject.
MAX_TEMPLATES_PER_SUBJECT = 20
MIN_ENROLMENT_CAPTURES = 1
# Duplicate-enrolment check (1:N before storing): at most this many of the new
# captures are searched. One 1:N search costs as much as an identification; with
# rank-1 identification ~100% on Tongji, one already-enrolled capture in three is
# missed with probability ~FNIR^3, while searching all ten costs 10 searches.
DUPLICATE_CHECK_CAPTURES = 3
# FAISS OpenMP threads. One query over a few thousand templates is too small to share:
# measured (200 Tongji palms x 10 templates, load average 2 on 2 cores) identify p50
# 20 ms with 1 thread against 52 ms with 2 (OpenMP threads spin while waiting).
# Concurrent API requests run in parallel threads of their own instead.
FAISS_THREADS = 1
# The FAISS shortlist is the union of the SHORTLIST_SIZE nearest templates (plain Hamming)
# to the probe translated by each (dy, dx) in SHORTLIST_QUERY_SHIFTS^2 cells. Measured
# (200 Tongji palms x 10 session-1 templates, first session-2 probe each): the best genuine
# template was missed by the unshifted query alone in 11/200 probes at size 100, and by
# the 9 translated queries in 0/200 at sizes 50, 100 and 200.
# Since 2026-11-30 the queries run in stages (identity/index.query_stages): variant 0
# unshifted; variant 0 at the 8 other translations; the 2 rotation variants
# (FEATURE_ROTATIONS_DEG) at all 9 translations; a search stops after a stage once a
# template reaches the early-accept score (EARLY_ACCEPT_RISK below). The rotation stage
# was added because the 2 probes lost at 1M before (both of Tongji palm013, session 2,
# rotated by about -4.5 degrees: variant 0 scores 0.15-0.16 against the mated template,
# variant 1 0.29-0.30) were never among the 1,000 nearest pooled codes of any of the 25
# translations -2..2 of variant 0, but first of variant 1's (offline study of the bench
# gallery, 2026-11-30: depth (8, 2) with these three stages recalls 283 / 283 at 1M; 25
# translations of variant 0, or a middle-stage depth of 1,000 / 400, stay at 281 / 283).
SHORTLIST_QUERY_SHIFTS = (-2, 0, 2)
# Large galleries (identity/index.py): from INDEX_COARSE_FROM templates on, FAISS scans a
# pooled code (majority of each bit plane over INDEX_COARSE_POOL cells: 3 x 16 x 16 =
# 768 bits, 96 bytes) instead of the 3072-bit code. Measured (150 Tongji palms, 1 session-1
# template each, + 100,000 filler templates of identity/scale_bench.py, 2 session-2 probes
# per palm, 9 translated queries): the mated template was within the 100 nearest of some
# query for 98.7 % of probes with pooled 2x2 codes (99.3 % with the full code, 96.0 % with
# 2x4 pools, 86.7 % with 4x4); one 1M-row scan of 9 queries costs ~25 ms with 96-byte codes,
# ~10 ms with 32 bytes and ~180 ms with the full 384 bytes (FAISS, 1 thread).
INDEX_COARSE_FROM = 50_000
INDEX_COARSE_POOL = (2, 2)
# Pooled codes rank the mated template less well: each query takes the
# shortlist x INDEX_COARSE_DEPTH[0] nearest rows, and the shortlist x INDEX_COARSE_DEPTH[1]
# nearest of their union are re-scored exactly (`storefront identity bench`, 150 real
# palms, 300 probes, shortlist 50; without widening 0.951 at 100k). Measured with (8, 4):
# shortlist recall 0.986 at 100k, 0.929 at 1M (identify p50 11 / 33 ms): short of the
# 0.999 / 20 ms target. Measured alternatives (100k, rank of the mated template among the
# merged candidates, 283 identifiable probes): adding the 3 rotation variants to the
# queries (27 queries) -> 0.993 within 100 but 3x the scan; 25 shifts (-2..2) of variant 0
# -> 0.993 within 50, 2.7x the scan; 4x4 pools (256 bits) -> 0.82 within 100.
# Since 2026-11-30 a middle stage ranks the union of the pooled candidates by plain
# Hamming distance of the full codes to the 9 translated queries (as the small-gallery
# first stage does, ~2.5 ms for 3,600 rows at 1M) before the exact re-scoring:
# shortlist recall 0.929 -> 0.993 at 1M and 0.986 -> 0.997 at 100k (`storefront identity
# bench`, same probes), identify p50 33 / 11 ms at load average 2: still short of the
# 0.999 / 20 ms target at 1M; the 9 pooled scans of 1M rows take ~25 ms of it (one scan
# ~2.8 ms; FAISS does not share the pass between queries). Depth (8, 2): 400 pooled
# candidates per query, 100 re-scored exactly, per search stage (see above; rows
# re-scored in an earlier stage are skipped). The middle stage computes its distance
# table with faiss.hammings (18 queries x 7,200 rows: 2.1 ms against 13.5 ms with numpy
# loops and 23 ms with one broadcast numpy array, load average 3.4).
INDEX_COARSE_DEPTH = (8, 2)
# Decision at scale (identity/decision.py): log-linear fits of the FMR tail,
# log10 FMR(t) = slope * t + intercept, where 3e-6 <= FMR <= 1e-2, on the Tongji tuning
# palms only (palm000-149; all 10 session-2 captures of each as probes against the 10
# session-1 templates of every other tuning palm).
# Template level, CompCode score (2,235,000 comparisons; `python benchmarks/threshold_at_scale.py`,
# 2026-11-30): slope -39.74, intercept 3.921; used by identity/index.EarlyAccept, which
# works on the index's CompCode scores.
# Subject level, fused score with the half-cell and sheared refinement
# (FEATURE_REFINE_OFFSETS_CELLS, FEATURE_REFINE_SHEARS), the subject's score being its best
# template's (the max rule of IdentityService; 223,500 comparisons; `python
# benchmarks/fused_threshold_at_scale.py`, 2026-12-01 21:15 UTC): -51.96 / 6.1928; used for
# the decision threshold at the gallery's size (decision.gallery_threshold): 0.2832 for FPIR
# 0.3 % at 1M (90 % bootstrap over the tuning palms 0.264-0.302; the held-out palms alone
# refit to 0.272), where FNIR is 0.67 % (1 of the 150 held-out first session-2 captures;
# 0.93 % over all their 10 captures) and 1.00 % on all 300 palms (0.73 % over 10 captures).
# With the half-cell refinement only (-49.857 / 5.6654): 0.2846, FNIR 0.67 % held out /
# 1.33 % on all 300 (1.13 / 1.23 % over 10 captures); before any refinement (-46.70 /
# 4.804): 0.285, FNIR 1.3 % / 2.3 %; CompCode alone (-37.34 / 4.101): 0.338, FNIR 3.3 % /
# 5.7 %.
FMR_TAIL_SLOPE = -39.74
FMR_TAIL_INTERCEPT = 3.921
SUBJECT_FMR_TAIL_SLOPE = -51.96
SUBJECT_FMR_TAIL_INTERCEPT = 6.1928
# The NIST 1:N reporting point (NIST IR 8271) for the target FPIR.
TARGET_FPIR = 0.003
# Early accept of a staged 1:N search (identity/index.EarlyAccept). A search of an index of
# n templates stops after a stage once a template scores t(n) = u + AMBIGUITY_MARGIN
# (at least IDENTIFY_THRESHOLD), where n * FMR(u) = EARLY_ACCEPT_RISK on the fitted tail
# above: u = (log10(EARLY_ACCEPT_RISK / n) - FMR_TAIL_INTERCEPT) / FMR_TAIL_SLOPE. With
# probability >= 1 - EARLY_ACCEPT_RISK (union bound over the n templates) no impostor
# template scores u or more, and then the early answer's decision (subject, identified vs
# ambiguous: the runner-up subject is an impostor below t - margin) is the exhaustive
# search's. On the tuning-half tail fit: t(n) = 0.320 at 10^4 templates, 0.345 at 10^5,
# 0.370 at 10^6, 0.395 at 10^7 (1M persons x 10 templates); always above the decision
# threshold of decision.gallery_threshold for those galleries (now a fused score: 0.25 /
# 0.264 / 0.283 / 0.302 at 10^4..10^7 subjects since the sheared refinement's refit;
# tests/unit/identity/test_decision.py).
# Since the fused second stage (RESCORE_SUBJECTS) decides on fused scores of the best
# subjects the index returns, an early stop can also change the decision through a
# runner-up the early search did not see; the bench checks every early answer against
# the full search after both stages (early_accept_decision_changed). 1e-4 is small
# next to the target FPIR (3e-3) and to the shortlist's own allowed miss rate (recall
# 0.999): the early exit adds at most 1e-4 to the error of an exhaustive exact search,
# if the log-linear tail holds down to FMR(u) = 1e-8..1e-11 (10^4..10^7 templates),
# 2.5-5.5 decades below the lowest measured FMR (4.5e-7): the same extrapolation as the
# threshold for FPIR at 1M. Measured (`storefront identity bench`, 2026-11-30, with the
# earlier all-palm tail fit, t = 0.298..0.339): 0.91 / 0.86 / 0.76 of the 300 probes stop
# early at 10k / 100k / 1M, and none of the early answers decides otherwise than the same
# search run to its end; identify p50 at 1M 10.8 ms (was 33.1), recall 283 / 283 (was
# 281). Re-measured with the tuning fit: benchmarks/README.md (issue 4).
EARLY_ACCEPT_RISK = 1e-4

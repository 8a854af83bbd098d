"""Do the captures of one enrolment show one palm?

An enrolment stores several captures as templates of one subject. Were they of different
palms (three people's hands in one kiosk session), every one of those palms would then be
identified as that subject at the gate. So the captures are compared with each other
(the fused CompCode + OrdinalCode score of :mod:`identity.matcher`, the pipeline's
score), two captures are linked when
their score reaches ``threshold`` (the identification threshold: a capture that would
not identify as the others is not the same palm for the gate either), and the largest
linked group is the palm being enrolled. Captures outside it are refused; when that
group is not a strict majority of the usable captures, the enrolment is refused, since
which palm was meant cannot be told.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from identity.matcher import PreparedProbe, ReferenceSet
from identity.template import Template


def same_palm_group(templates: Sequence[Template], threshold: float) -> list[int]:
    """Indices (ascending) of the largest group of mutually linked ``templates``.

    Two templates are linked when their score is at least ``threshold`` (in [0, 1]);
    groups are the connected components of that graph; ties go to the group holding the
    earliest capture. Scores are fused CompCode + OrdinalCode scores, so every template
    must carry its ordinal code. Returns ``[]`` for no templates, ``[0]`` for one.
    Raises ValueError for a threshold outside [0, 1] and TemplateFormatError (from
    :mod:`identity.matcher`) when two or more templates are given and one lacks the
    ordinal code or the grids differ.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is outside [0, 1]")
    count = len(templates)
    if count <= 1:
        return list(range(count))
    refs = ReferenceSet.from_templates(list(templates), fused=True)
    scores = np.stack([PreparedProbe(t, fused=True).scores(refs) for t in templates])
    linked = np.maximum(scores, scores.T) >= threshold
    group = np.full(count, -1)
    for start in range(count):
        if group[start] >= 0:
            continue
        group[start], stack = start, [start]
        while stack:
            here = stack.pop()
            for other in np.nonzero(linked[here] & (group < 0))[0]:
                group[other] = start
                stack.append(int(other))
    sizes = np.bincount(group, minlength=count)
    best = int(np.argmax(sizes))  # the first group of the largest size
    return [i for i in range(count) if group[i] == best]

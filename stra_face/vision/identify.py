"""Which enrolled subject each face of one photo is: one person appears once in a photo."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

NOT_A_MATCH = -2.0  # below any cosine similarity: a face-subject pair under the threshold


def assign_subjects(candidates: list[list], threshold: float) -> list[str | None]:
    """Per face, the subject it is (None: unknown), from its candidates (objects with `subject_id` and
    `similarity`, e.g. gallery matches). Faces and accepted candidates are matched one-to-one for the
    highest total similarity (Hungarian assignment); a face left without an accepted candidate is unknown."""
    subjects = sorted({m.subject_id for matches in candidates for m in matches if m.similarity >= threshold})
    if not subjects:
        return [None] * len(candidates)
    column = {subject: j for j, subject in enumerate(subjects)}
    similarity = np.full((len(candidates), len(subjects)), NOT_A_MATCH)
    for i, matches in enumerate(candidates):
        for m in matches:
            if m.similarity >= threshold:
                similarity[i, column[m.subject_id]] = m.similarity
    assigned: list[str | None] = [None] * len(candidates)
    for i, j in zip(*linear_sum_assignment(similarity, maximize=True)):
        if similarity[i, j] > NOT_A_MATCH:
            assigned[i] = subjects[j]
    return assigned

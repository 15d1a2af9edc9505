"""When one candidate is better than another: when it wins more of the same examples than chance.

The final check compares a few candidates on a few dozen examples, and the best-scoring one often
wins by luck: the best of several candidates that are all as good as each other beats the
reference by a few examples most of the time. A paired sign test asks for
more: the gain (examples the new candidate gets right that the old one misses, less the reverse)
must be at least ``Z`` times its standard deviation under "no difference", sqrt(wins + losses).
With 0/1 scores that is a one-sided test at about 95 %: 3 wins and no loss pass, 6 wins and 2
losses do not.

Where the examples are few (a partition's four checks), only a near-perfect gain passes it: there
the test only refuses what is clearly worse, and the gain is confirmed where the evidence is pooled (merge
nodes, the final check).
"""

from __future__ import annotations

import math
from typing import Sequence

Z = 1.645  # one-sided 95 % under the normal approximation


def clearly_better(new: Sequence[float], old: Sequence[float], z: float = Z) -> bool:
    """True when ``new`` beats ``old`` on the same examples (paired, in order) by more than chance."""
    if len(new) != len(old):
        raise ValueError(f"paired scores must have the same length ({len(new)} != {len(old)})")
    diffs = [a - b for a, b in zip(new, old)]
    gain = sum(diffs)
    return gain > 0 and gain >= z * math.sqrt(sum(d * d for d in diffs))

"""When one candidate is better than another: when it wins more of the same examples than chance.

The final check compares a few candidates on a few dozen examples, and the best-scoring one often
wins by luck. On BBH-15 (seed 1, `route="demos"`) the merge of three instructions, one about
adjective order, beat "Answer the question." by 4 of the 60 validation questions and was returned
for all fifteen tasks; it then scored 39.3 % on the test questions. A paired sign test asks for
more: the gain (examples the new candidate gets right that the old one misses, less the reverse)
must be at least ``Z`` times its standard deviation under "no difference", sqrt(wins + losses).
With 0/1 scores that is a one-sided test at about 95 %: 3 wins and no loss pass, 6 wins and 2
losses do not.

The same arithmetic says when a test is worth running at all: a proposal is only worth writing
where fixing a realistic share of the missed examples would pass (``could_be_clearly_better``).
"""

from __future__ import annotations

import math
from typing import Sequence

Z = 1.645  # one-sided 95 % under the normal approximation
# The share of its missed checks a proposal must be able to fix for one to be worth writing. A weak
# optimizer's rewrite rarely fixes more: in the four v9 BBH-15 cells (1.5B optimizer, four checks
# per partition) none of 61 proposals got more than one check more right than the kept candidate.
FIX_SHARE = 0.5


def clearly_better(new: Sequence[float], old: Sequence[float], z: float = Z) -> bool:
    """True when ``new`` beats ``old`` on the same examples (paired, in order) by more than chance."""
    if len(new) != len(old):
        raise ValueError(f"paired scores must have the same length ({len(new)} != {len(old)})")
    diffs = [a - b for a, b in zip(new, old)]
    gain = sum(diffs)
    return gain > 0 and gain >= z * math.sqrt(sum(d * d for d in diffs))


def could_be_clearly_better(old: Sequence[float], z: float = Z, share: float = 1.0) -> bool:
    """True when a candidate that fixes ``share`` of the examples ``old`` misses, and breaks none,
    would be ``clearly_better``. Only the examples ``old`` misses can be won, and a gain of g changed
    examples is g / sqrt(g) = sqrt(g) standard deviations: below z * z (about 3) fixed examples
    nothing passes. ``share=1`` asks whether anything could pass (a perfect proposal); ``share=0.5``
    whether a realistic one could, which on four checks it never can. Nothing beats a perfect score."""
    misses = sum(1 for score in old if score < 1.0)
    fixed = share * misses
    return misses > 0 and fixed >= z * z

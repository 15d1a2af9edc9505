"""Merge (the paper's step 3, Algorithm 2): the partitions' optimized programs merged progressively,
each merged node validated on the union of its children's held-out examples (``progressive``)."""

from dspy_fgo.merge.progressive import MERGE_ROUNDS, MergeNode, MergeSettings, MergeTree, ProgressiveMerge, merge_demos

__all__ = ["MERGE_ROUNDS", "MergeNode", "MergeSettings", "MergeTree", "ProgressiveMerge", "merge_demos"]

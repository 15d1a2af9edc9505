"""Divide (the paper's step 1): split the trainset into partitions, and give each the held-out
examples its changes are judged on (``partition``); the embeddings partitions are clustered by
(``embed``) and the space inputs are compared in for routing (``space``)."""

from dspy_fgo.divide.partition import (ByDifficulty, ByEmbedding, ByKey, Imbalanced, Partition, Partitioner,
                                       RandomSplit, assign_checks, clusters_of, input_text, pool_small,
                                       resolve_partitioner)

__all__ = ["ByDifficulty", "ByEmbedding", "ByKey", "Imbalanced", "Partition", "Partitioner", "RandomSplit",
           "assign_checks", "clusters_of", "input_text", "pool_small", "resolve_partitioner"]

"""dspy-fgo: Fine-Grained Generative Optimization for DSPy programs."""

from dspy_fgo.baselines import AllAtOnce, BatchWise, Bootstrapping
from dspy_fgo.candidate import apply_candidate, read_candidate
from dspy_fgo.divide.partition import ByDifficulty, ByEmbedding, ByKey, Imbalanced, Partitioner, RandomSplit
from dspy_fgo.fgo import FGO
from dspy_fgo.report.report import Report
from dspy_fgo.route.router import Routed, load_routed

__all__ = ["FGO", "AllAtOnce", "BatchWise", "Bootstrapping", "Report", "Partitioner", "ByKey", "RandomSplit", "ByEmbedding", "Imbalanced", "ByDifficulty", "read_candidate", "apply_candidate", "Routed", "load_routed"]
__version__ = "0.1.0"

"""After the merge: each input's demos routed to its partition, and what is returned, one merged
program or a routed one (``route="auto"``, ``"demos"``, ``True``); see ``dspy_fgo.route``."""

from __future__ import annotations

import dspy

from dspy_fgo.candidate import Candidate, apply_candidate, is_text_key
from dspy_fgo.merge.progressive import MergeNode, merge_demos
from dspy_fgo.optimize.demos import demos_from_runs
from dspy_fgo.optimize.reflect import learning_runs
from dspy_fgo.route.nearest import POOL_PER_DEMO, NearestDemos
from dspy_fgo.route.router import DemoRoute, RoutePlan, Routed
from dspy_fgo.run.runtime import mean
from dspy_fgo.significance import clearly_better


def merged_or_routed(s, settings, student, chosen, selection, demo_route):
    """``route="auto"``: the routed program only where it clearly beats the merged one (the same
    instructions with every partition's demos interleaved, one program) on the valset, by the
    final check's paired test; a single-task trainset gains nothing from routing and gets one program."""
    merged = demo_route.merged(chosen)
    if s.rt.exhausted():  # no comparison: the simpler program
        selection["route"] = "auto: the merged program (budget exhausted before routing could be weighed)"
        return merged, apply_candidate(student, merged), selection
    items = s.val_items() if s.valset else s.items()
    with s.stage("select"):
        routed_runs = demo_route.item_scores(chosen, items)  # made by the final check: no call
        merged_runs = s.rt.item_scores(merged, items)
    routed, plain = mean(routed_runs), mean(merged_runs)
    selection["scores"].update({"merged": plain, "routed demos": routed})
    if clearly_better(routed_runs, merged_runs, settings.accept_z):
        selection["route"] = (f"auto: routed demos, {routed:.3f} on the {selection['on']}, clearly above the "
                              f"merged program's {plain:.3f}; " + selection["route"])
        return chosen, demo_route.program(student, chosen), selection
    selection["route"] = (f"auto: the merged program (every partition's demos interleaved, up to max_demos), "
                          f"{plain:.3f} on the {selection['on']}; routed demos {routed:.3f} are not clearly better")
    return merged, apply_candidate(student, merged), selection

def route_specialists(s, settings, student, nodes, chosen, program, selection, demo_route=None) -> dspy.Module:
    """Give each partition whose specialist clearly beats the returned program on its held-out
    checks that specialist; return the routed program only if it also wins the final check.

    With routed demos the returned program already runs each partition's inputs with its own
    demos (or pool), so a specialist is routed for its instruction alone: it keeps the
    partition's demos, and both sides are scored as the routed program runs them."""
    leaves = [node for node in nodes if not node.children]
    per_partition = demo_route is not None and selection["returned"] != "unoptimized"
    if per_partition:
        singles = demo_route.experts(chosen)  # one per partition, then the fallback
        specialists = [demo_route.expert(leaf.candidate, i) for i, leaf in enumerate(leaves)]
        routed = demo_route.plan.decide(leaves, singles[:-1], specialists, demo_route.scores_of)
        candidates = [*(c if r else e for c, r, e in zip(specialists, routed, singles)), singles[-1]]
        router, nearest = demo_route.router, demo_route.nearest
    else:
        plan = RoutePlan(s.rt, s.items_of, s.trainset, settings.embedder, s.counters)
        routed = plan.decide(leaves, [chosen] * len(leaves))
        router = plan.router(leaves, routed) if any(routed) else None
        candidates = [leaf.candidate for leaf, r in zip(leaves, routed) if r] + [chosen]
        nearest = None
    if not any(routed):
        return program
    items = s.val_items() if s.valset else s.items()
    score = mean(demo_route.routed_scores(candidates, items) if per_partition
                 else plan.item_scores(router, candidates, items))
    best = max(selection["scores"].values(), default=float("-inf"))
    selection["scores"]["routed"] = score
    if score <= best:
        selection["route"] = f"routed scored {score:.3f}, not above {selection['returned']}'s {best:.3f}"
        return program
    selection.update(returned="routed", reason=f"{sum(routed)} partitions routed to their specialists: "
                                               f"{score:.3f} on the {selection['on']} against "
                                               f"{selection['returned']}'s {best:.3f}")
    return Routed([apply_candidate(student, c) for c in candidates], router, nearest)

def demo_route_of(s, settings, start, partitions, results) -> DemoRoute | None:
    """Each partition's kept demos, for the inputs nearest to it; every partition's, interleaved
    up to ``max_demos``, for inputs unlike all of them. None when no partition kept any."""
    kept_demos = [{k: v for k, v in r.candidate.items() if not is_text_key(k)} for r in results]
    if not any(kept_demos):
        return None
    plan = RoutePlan(s.rt, s.items_of, s.trainset, settings.embedder, s.counters)
    demos, nearest = kept_demos, None
    if settings.nearest_demos:  # a partition that kept demos keeps a pool of them instead, cut per input
        demos = [_demo_pool(s, settings, start, p, r) if d else d for p, r, d in zip(partitions, results, kept_demos)]
        nearest = NearestDemos.fit(s.trainset, s.valset, settings.max_demos, settings.balance_demos, settings.embedder)
    pool = _demo_nodes(partitions, results, demos)
    return DemoRoute(plan, pool, demos, _interleaved(settings, pool, demos), nearest,
                     single=_interleaved(settings, _demo_nodes(partitions, results, kept_demos), kept_demos))

def _demo_nodes(partitions, results, demos) -> list[MergeNode]:
    return [MergeNode(id=i, candidate=d, examples=p.indices, score=r.score)
            for i, (p, r, d) in enumerate(zip(partitions, results, demos))]

def _interleaved(settings, nodes: list[MergeNode], demos) -> Candidate:
    """Every partition's demos, best-scoring partition first, up to ``max_demos`` (with ``inner=``,
    the most an inner optimizer chose; ``merge_demos``)."""
    return {k: merge_demos(k, nodes, settings.merged_demos) for k in dict.fromkeys(k for d in demos for k in d)}

def _demo_pool(s, settings, start, partition, result) -> Candidate:
    """The demos of the partition's training and held-out runs (the start's, made already: no LM
    call unless resumed), up to ``POOL_PER_DEMO`` times ``max_demos`` per predictor."""
    items = s.items_of(list(dict.fromkeys([*partition.indices, *result.checks])))
    runs = learning_runs(s.rt, start, items)
    pool = demos_from_runs(start, runs, settings.max_demos * POOL_PER_DEMO, s.rt.student, balance=False)
    s.counters.add("demo_pools", 1)
    return pool

"""The final check keeps the preferred (shortest) candidate unless another wins by more than chance."""

import dspy
import pytest

from conftest import RULE, TOY_Z, exact, make_examples
from dspy_fgo import FGO
from dspy_fgo.significance import clearly_better


def test_the_sign_test_needs_more_than_a_few_net_wins():
    assert clearly_better([1, 1, 1, 0], [0, 0, 0, 0])  # 3 wins, no loss
    assert not clearly_better([1, 1, 0, 0], [0, 0, 0, 0])  # 2 wins: chance does that
    assert not clearly_better([1] * 6 + [0, 0], [0] * 6 + [1, 1])  # 6 wins, 2 losses
    assert clearly_better([1] * 10 + [0, 0], [0] * 10 + [1, 1])
    assert not clearly_better([1, 0], [1, 0]) and not clearly_better([], [])
    assert clearly_better([0.5] * 8, [0.0] * 8)  # fractional scores: a steady gain of one half
    with pytest.raises(ValueError, match="same length"):
        clearly_better([1], [1, 0])


@pytest.mark.parametrize("beta_questions, returned_root", [(1, False), (3, True)])
def test_the_root_replaces_the_shorter_child_only_when_clearly_better(task_lm, prompt_lm, beta_questions,
                                                                      returned_root):
    # The root knows both rules; alpha's node knows one and its prompt is shorter. They differ only
    # on the beta questions of the valset: one is chance, three are evidence.
    trainset = make_examples(["alpha", "beta"])
    valset = make_examples(["alpha"], per_category=3) + make_examples(["beta"], per_category=beta_questions)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1,
              max_demos=0, accept_z=TOY_Z)
    optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset, valset=valset)
    selection = fgo.report_.selection
    assert selection["scores"]["root"] == max(selection["scores"].values()) == 1.0
    assert (selection["returned"] == "root") is returned_root
    assert len(RULE.findall(optimized.signature.instructions)) == (2 if returned_root else 1)
    if not returned_root:
        assert "within chance" in selection["reason"]

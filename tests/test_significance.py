"""The final check returns a change only when it beats the unchanged instructions by more than chance."""

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


@pytest.mark.parametrize("alpha_questions, returned_root", [(1, False), (2, True)])
def test_a_change_is_returned_only_when_clearly_better_than_the_unchanged_instructions(task_lm, prompt_lm,
                                                                                      alpha_questions,
                                                                                      returned_root):
    # The root knows both rules and gets every validation question right; the user's instruction
    # gets none. Two more right is chance, three are evidence.
    trainset = make_examples(["alpha", "beta"])
    valset = make_examples(["alpha"], per_category=alpha_questions) + make_examples(["beta"], per_category=1)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", epochs=1,
              max_demos=0, accept_z=TOY_Z)
    optimized = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset, valset=valset)
    selection = fgo.report_.selection
    assert selection["scores"]["root"] == max(selection["scores"].values()) == 1.0
    assert selection["scores"]["instructions unchanged"] == 0.0
    assert (selection["returned"] == "root") is returned_root
    assert len(RULE.findall(optimized.signature.instructions)) == (2 if returned_root else 0)
    if not returned_root:
        assert selection["returned"] == "instructions unchanged" and "within chance" in selection["reason"]

"""Bad settings and bad inputs fail fast, with a message naming the problem, before any LM call."""

import dspy
import pytest

from conftest import RULE, exact, make_examples, TOY_Z
from dspy_fgo import FGO


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"metric": "not callable"}, "metric must be callable"),
        ({"epochs": -1}, "epochs must be an integer >= 0"),
        ({"merge_threshold": 1}, "merge_threshold must be an integer >= 2"),
        ({"n_partitions": 0}, "n_partitions must be an integer >= 1"),
        ({"num_threads": 0}, "num_threads must be an integer >= 1"),
        ({"clustering": "dbscan"}, "clustering must be one of"),
        ({"prompt_model": "openai/gpt-4o"}, "prompt_model must be a dspy.LM"),
        ({"embedder": 42}, "embedder must be"),
        ({"partition_by": 3.5}, "partition_by must be"),
    ],
)
def test_bad_settings(settings, message):
    settings = {"metric": exact, **settings}
    with pytest.raises((TypeError, ValueError), match=message):
        FGO(**settings)


def test_an_unknown_setting_is_named_with_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown setting epoch; the settings are: .*epochs"):
        FGO(metric=exact, epoch=2)
    with pytest.raises(ValueError, match="auto must be one of"):
        FGO(metric=exact, auto="fast")


def test_a_preset_sets_the_search_and_explicit_settings_override_it():
    from dspy_fgo.settings import PRESETS

    assert FGO(metric=exact, auto="medium").settings == FGO(metric=exact).settings
    light = FGO(metric=exact, auto="light")
    assert (light.epochs, light.proposals, light.min_failures) == (1, 2, 2)
    assert FGO(metric=exact, auto="heavy").proposals == PRESETS["heavy"]["proposals"] > FGO(metric=exact).proposals
    assert FGO(metric=exact, auto="light", epochs=3).epochs == 3
    assert FGO(metric=exact, auto="light").report_ is None


def test_settings_are_validated_once_and_cannot_be_changed_behind_the_check():
    import dataclasses

    fgo = FGO(metric=exact, route="demos")
    assert fgo.nearest_demos is True  # resolved once, from route and max_demos
    with pytest.raises(dataclasses.FrozenInstanceError):
        fgo.settings.epochs = -1
    with pytest.raises(ValueError, match="proposals must be an integer >= 1"):
        fgo.settings.replace(proposals=0)


def run_fgo(task_lm, prompt_lm, student=None, trainset=None, **settings):
    settings.setdefault("accept_z", TOY_Z)
    fgo = FGO(metric=exact, task_model=task_lm, prompt_model=prompt_lm, **settings)
    trainset = make_examples(["a", "b"]) if trainset is None else trainset
    return fgo.compile(student or dspy.Predict("question -> answer"), trainset=trainset)


@pytest.mark.parametrize(
    "trainset, settings, message",
    [
        ([], {}, "trainset must be a non-empty list"),
        (None, {"partition_by": "topic"}, "has no field 'topic'"),
        (None, {"n_partitions": 100}, "n_partitions=100 is larger than the trainset"),
        ([dspy.Example(question="q", answer="a")], {}, "has no input fields"),
        ([{"question": "q", "answer": "a"}], {}, "not a dspy.Example"),
    ],
)
def test_bad_inputs_raise_before_any_lm_call(task_lm, prompt_lm, trainset, settings, message):
    with pytest.raises((TypeError, ValueError), match=message):
        run_fgo(task_lm, prompt_lm, trainset=trainset, **settings)
    assert task_lm.calls == 0 and prompt_lm.calls == 0


def test_program_without_predictors(task_lm, prompt_lm):
    class Empty(dspy.Module):
        def forward(self, question):
            return dspy.Prediction(answer=question)

    with pytest.raises(ValueError, match="no predictors"):
        run_fgo(task_lm, prompt_lm, student=Empty())


def test_no_lm_configured():
    fgo = FGO(accept_z=TOY_Z, metric=exact)
    with pytest.raises(ValueError, match="no LM configured"):
        fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["a"]))


def test_metric_errors_stop_past_max_errors(task_lm, prompt_lm):
    def broken(example, prediction, trace=None):
        raise KeyError("oops")

    fgo = FGO(accept_z=TOY_Z, metric=broken, task_model=task_lm, prompt_model=prompt_lm, partition_by="category", max_errors=2)
    with pytest.raises(RuntimeError, match=r"metric raised \d+ times, more than max_errors=2"):
        fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["a", "b"]))


def test_failing_task_calls_score_zero_and_the_run_goes_on(prompt_lm):
    from conftest import task_respond
    from fakes import FakeLM

    def flaky(text):
        if "number 1 " in text.rsplit("[[ ## question ## ]]", 1)[-1]:  # the question asked, not a demo
            raise TimeoutError("simulated timeout")

    lm = FakeLM(task_respond, fail=flaky)
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=lm, prompt_model=prompt_lm, partition_by="category", epochs=1)
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["a", "b"]))
    assert fgo.report_.events["program_errors"] > 0
    # The failed runs scored 0, and the others still taught each partition its rule.
    assert set(RULE.findall(fgo.report_.root["candidate"]["self"])) == {"a", "b"}

"""Tool descriptions as optimizable text, and agent trajectories shortened to fit (fake LMs)."""

import dspy
import pytest

from conftest import RULE, exact, make_examples, optimizer_respond, TOY_Z
from dspy_fgo import FGO, AllAtOnce, apply_candidate, read_candidate
from dspy_fgo.run.accounting import Counters
from dspy_fgo.optimize.prompts import agent_log
from dspy_fgo.tools import describe_tool
from fakes import FakeLM, field_value


def lookup(key: str) -> str:
    """Look up a key."""
    return f"value: {key}"


def agent(arg_desc=None):
    tool = dspy.Tool(lookup, arg_desc=arg_desc) if arg_desc else lookup
    return dspy.ReAct("question -> answer", tools=[tool], max_iters=3)


def test_round_trip_keeps_the_agent_exactly():
    program = agent()
    candidate = read_candidate(program, tools=True)
    assert candidate["tool:lookup"] == "Look up a key."
    assert "tool:lookup(key)" not in candidate  # no description of its own: the tool's text covers it
    assert read_candidate(agent({"key": "The key."}), tools=True)["tool:lookup(key)"] == "The key."
    assert "(1) lookup" not in candidate["react"] and "When providing `next_tool_args`" in candidate["react"]
    copy = apply_candidate(program, candidate)
    assert copy.react.signature.instructions == program.react.signature.instructions
    assert read_candidate(program) == read_candidate(copy)


def test_new_descriptions_reach_the_copy_only():
    program = agent({"key": "The key."})
    candidate = read_candidate(program, tools=True)
    candidate.update({"tool:lookup": "Find the answer for a key.", "tool:lookup(key)": "The key, e.g. alpha-1."})
    copy = apply_candidate(program, candidate)
    instruction = copy.react.signature.instructions
    assert "(1) lookup, whose description is <desc>Find the answer for a key.</desc>" in instruction
    assert "The key, e.g. alpha-1." in instruction and instruction.count("(1) lookup") == 1
    assert "(2) finish" in instruction  # DSPy's own tool stays, in its place
    assert program.tools["lookup"].desc == "Look up a key." and program.tools["lookup"].args["key"]["description"] == "The key."
    assert copy.tools["lookup"].desc == "Find the answer for a key."
    assert copy.tools["lookup"].func is lookup  # the code is the user's, never generated


def test_describe_tool_tells_the_optimizer_what_the_text_is():
    assert "tool `lookup`" in describe_tool("tool:lookup")
    assert "argument `key` of tool `lookup`" in describe_tool("tool:agent.lookup(key)")
    assert "agent `agent`" in describe_tool("tool:agent.lookup(key)")


def agent_respond(fields, messages):
    """The agent looks the answer up only when the tool's description states its category's rule."""
    system, user = messages[0]["content"], messages[-1]["content"]
    question = field_value(messages, "question")
    category, number = question.split()[0], question.split()[3]
    if "next_tool_name" in fields:
        if "observation_0" in user:
            return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": "{}"}
        tool_line = next(line for line in system.split("\n") if line.strip().startswith("(1) lookup"))
        key = f"{category}-{number}" if category in RULE.findall(tool_line) else "guess"
        return {"next_thought": "look it up", "next_tool_name": "lookup", "next_tool_args": f'{{"key": "{key}"}}'}
    answer = user.split("value: ", 1)[1].split()[0].strip("'\",}") if "value: " in user else "unknown"
    return {f: (answer if f == "answer" else "from the lookup") for f in fields}


@pytest.mark.parametrize("optimizer", [FGO, AllAtOnce])
def test_optimizers_rewrite_tool_descriptions(optimizer):
    student = agent()
    settings = {"partition_by": "category", "accept_z": TOY_Z} if optimizer is FGO else {}
    compiler = optimizer(metric=exact, task_model=FakeLM(agent_respond), prompt_model=FakeLM(optimizer_respond),
                         epochs=1, optimize_tools=True, **settings)
    optimized = compiler.compile(student, trainset=make_examples(["alpha", "beta"]))
    assert set(RULE.findall(optimized.tools["lookup"].desc)) == {"alpha", "beta"}
    assert compiler.report_.selection["scores"][compiler.report_.selection["returned"]] == 1.0
    assert student.tools["lookup"].desc == "Look up a key."


def test_optimize_tools_needs_an_agent():
    with pytest.raises(ValueError, match="no agent with tools"):
        FGO(accept_z=TOY_Z, metric=exact, task_model=FakeLM(agent_respond), optimize_tools=True).compile(
            dspy.Predict("question -> answer"), trainset=make_examples(["alpha"]))


def test_long_agent_logs_keep_the_steps_that_matter():
    log = {}
    for i in range(12):
        failed = i == 6
        log.update({f"thought_{i}": f"thinking {i} " * 20, f"tool_name_{i}": "read" if not failed else "search",
                    f"tool_args_{i}": {"path": f"p{i}"},
                    f"observation_{i}": "Execution error in search: bad path" if failed else "text " * 100})
    counters = Counters()
    lines = agent_log(log, 2500, counters)
    text = "\n".join(lines)
    assert len(text) <= 2500 + 200
    kept = [int(line.split()[1].rstrip(":")) for line in lines if line.startswith("  step ")]
    assert kept == [0, 5, 6, 7, 10, 11]  # the plan, the failure and its neighbours, the end
    assert "[steps 1-4 cut to fit: they called read, read, read, read]" in text
    assert "Execution error in search" in text
    assert counters.to_dict() == {"agent_runs_shortened": 1, "agent_steps_cut": 6}
    assert len(agent_log(log, 10 ** 6)) == 12  # when it fits, every step stays

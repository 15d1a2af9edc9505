"""FGO on a dspy.ReAct agent (fake LMs): both of ReAct's predictors are optimized, tools untouched."""

import dspy

from conftest import RULE, exact, make_examples, objective, optimizer_respond, TOY_Z
from dspy_fgo import FGO, read_candidate
from fakes import FakeLM, field_value, last_user


def lookup(key: str) -> str:
    """Look up a key in the knowledge base."""
    return f"value of {key}"


def agent_respond(fields, messages):
    """The agent calls `lookup` once, then finishes; the extractor answers right iff it knows the rule."""
    if "next_tool_name" in fields:
        if "observation_0" in last_user(messages):
            return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": "{}"}
        return {"next_thought": "look it up", "next_tool_name": "lookup", "next_tool_args": '{"key": "x"}'}
    question = field_value(messages, "question")
    category, number = question.split()[0], question.split()[3]
    known = set(RULE.findall(objective(messages)))
    answer = f"{category}-{number}" if category in known else "unknown"
    return {f: (answer if f == "answer" else "reasoned") for f in fields}


def test_fgo_optimizes_a_react_agent():
    agent = dspy.ReAct("question -> answer", tools=[lookup], max_iters=3)
    before = read_candidate(agent)
    tool_desc = agent.tools["lookup"].desc
    optimizer_lm = FakeLM(optimizer_respond)
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=FakeLM(agent_respond), prompt_model=optimizer_lm,
              partition_by="category", epochs=1)
    optimized = fgo.compile(agent, trainset=make_examples(["alpha", "beta"]))
    after = read_candidate(optimized)
    assert set(after) == set(before) == {"react", "extract.predict"}
    assert set(RULE.findall(after["extract.predict"])) == {"alpha", "beta"}
    assert read_candidate(agent) == before and agent.tools["lookup"].desc == tool_desc
    assert fgo.report_.root["score"] == 1.0
    # The critique saw the agent's real steps: its tool call and the finish.
    critiques = [p for p in optimizer_lm.prompts if "[[ ## run ## ]]" in p or "[[ ## runs ## ]]" in p]
    assert critiques and all("call: lookup(key: x) | observation: value of x" in p for p in critiques)

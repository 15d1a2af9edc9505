"""Tool descriptions as optimizable text.

A ``dspy.ReAct`` agent picks its tools by their descriptions, which DSPy writes into the agent's
instruction when the agent is built, one line per tool. With ``optimize_tools=True`` a candidate
carries, besides each predictor's instruction, each tool's description under
``tool:<agent>.<tool>`` and each described argument's under ``tool:<agent>.<tool>(<arg>)``. The agent's own
instruction is then read without its tool lines, and applying a candidate writes the tool lines
back from the (possibly rewritten) descriptions, so instruction and tools are critiqued, rewritten
and merged as separate texts. Only text changes: a tool's code is never generated or run from LLM
output, and the student's tools are never modified (the optimized copy gets its own).
"""

from __future__ import annotations

import copy
import re

import dspy

TOOL = "tool:"
FINISH = "finish"  # DSPy's own end-of-episode tool: not the user's to optimize
_ARGS_LINE = "When providing `next_tool_args`"
_KEY = re.compile(r"^tool:(?:(?P<agent>.+)\.)?(?P<tool>[^.()]+?)(?:\((?P<arg>[^()]+)\))?$")


def is_tool_key(key: str) -> bool:
    return key.startswith(TOOL)


def agents(program: dspy.Module) -> list[tuple[str, dspy.Module]]:
    """(path, module) of every ReAct-style module: a ``tools`` dict and a ``react`` predictor."""
    found = []
    for name, module in program.named_sub_modules():
        if isinstance(getattr(module, "tools", None), dict) and isinstance(getattr(module, "react", None), dspy.Predict):
            found.append((name.removeprefix("self").removeprefix("."), module))
    return found


def tool_key(agent: str, tool: str, arg: str | None = None) -> str:
    base = f"{TOOL}{agent + '.' if agent else ''}{tool}"
    return f"{base}({arg})" if arg else base


def user_tools(agent: dspy.Module) -> dict[str, dspy.Tool]:
    return {name: tool for name, tool in agent.tools.items() if name != FINISH}


def read_tools(program: dspy.Module) -> dict[str, str]:
    """Every tool's description, and every argument description the tool has.

    An argument without a description gets no text of its own (one more optimizer call per
    rewrite and merge, for every such argument): the tool's description can explain it. Give
    ``dspy.Tool(func, arg_desc={...})`` to have an argument's description optimized on its own.
    """
    texts = {}
    for path, agent in agents(program):
        for name, tool in user_tools(agent).items():
            texts[tool_key(path, name)] = tool.desc or ""
            for arg, schema in (tool.args or {}).items():
                if schema.get("description"):
                    texts[tool_key(path, name, arg)] = schema["description"]
    return texts


def tool_lines(agent: dspy.Module) -> list[str]:
    """The lines DSPy's ReAct writes into its instruction, one per tool."""
    return [f"({i + 1}) {tool}" for i, tool in enumerate(agent.tools.values())]


def strip_tool_lines(instruction: str, agent: dspy.Module) -> str:
    """The agent's instruction without its tool lines (the tools are separate texts)."""
    lines = set(tool_lines(agent))
    return "\n".join(line for line in instruction.split("\n") if line not in lines)


def with_tool_lines(instruction: str, agent: dspy.Module) -> str:
    """Put the tool lines back where ReAct has them: before its line about argument format."""
    lines = instruction.split("\n")
    at = next((i for i, line in enumerate(lines) if line.startswith(_ARGS_LINE)), len(lines))
    return "\n".join(lines[:at] + tool_lines(agent) + lines[at:])


def apply_tools(program: dspy.Module, candidate: dict[str, str]) -> None:
    """Write the candidate's tool texts into ``program`` (a copy) and re-render its agents' tool lines."""
    for path, agent in agents(program):
        keys = {tool_key(path, name) for name in user_tools(agent)}
        if not keys & set(candidate):
            continue
        react = agent.react
        # The instruction may still hold the old tool lines (when the candidate did not set it).
        instruction = strip_tool_lines(react.signature.instructions, agent)
        agent.tools = {name: copy.copy(tool) for name, tool in agent.tools.items()}  # never touch the student's
        for name, tool in user_tools(agent).items():
            tool.args = copy.deepcopy(tool.args)
            tool.desc = candidate.get(tool_key(path, name), tool.desc)
            for arg, schema in (tool.args or {}).items():
                text = candidate.get(tool_key(path, name, arg))
                if text:
                    schema["description"] = text
        react.signature = react.signature.with_instructions(with_tool_lines(instruction, agent))


def describe_tool(key: str) -> str:
    """What a tool text is, for the optimizer LM (it reads it as a step to improve)."""
    match = _KEY.match(key)
    if match is None:
        raise KeyError(f"not a tool key: {key!r}")
    agent = f"agent `{match['agent']}`" if match["agent"] else "the agent"
    if match["arg"]:
        return (f"the description of argument `{match['arg']}` of tool `{match['tool']}`, which {agent} reads "
                "to fill that argument: say what value it expects and in which format (one or two sentences)")
    return (f"the description of tool `{match['tool']}`, which {agent} reads when choosing its next tool: say "
            "what the tool does, when to use it and what it returns (a few sentences; not a step instruction)")

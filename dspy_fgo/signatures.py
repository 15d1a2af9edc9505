"""The DSPy signatures FGO speaks to the optimizer LM: critique, rewrite, merge.

They follow the paper's prompts (Appendix G, Figures 13, 14 and 16), shortened so that small
optimizer models answer them reliably.
"""

import dspy


class CritiqueRun(dspy.Signature):
    """You review one run of an LLM program on one task: the paper's "textual gradient".

    Compare the program's output with the expected answer. If the run is wrong, say at which step it
    went wrong, what the mistake was, what general pattern caused it, and what the step's instruction
    should tell the model so that similar tasks are solved. If the run is right, say in one sentence
    which behaviour made it work. Be brief (at most 4 sentences) and general: the lesson must help
    on other tasks of the same kind, not only this one."""

    program_instructions: str = dspy.InputField(desc="the current instruction of each step of the program")
    run: str = dspy.InputField(desc="the task input, each step's outputs, the expected answer and the score")
    critique: str = dspy.OutputField(desc="what went wrong or right, and the general lesson")


class CritiqueRuns(dspy.Signature):
    """You review several runs of an LLM program on tasks of one kind: the textual gradient of a batch.

    Compare each run's output with the expected answer. Name the recurring mistakes (which step,
    what went wrong, what general pattern caused it) and what worked, then say what the steps'
    instructions should tell the model so that tasks of this kind are solved. Be brief (at most 8
    sentences) and general: lessons must help on other tasks of the same kind."""

    program_instructions: str = dspy.InputField(desc="the current instruction of each step of the program")
    runs: str = dspy.InputField(desc="the runs: each with its input, outputs, expected answer and score")
    critique: str = dspy.OutputField(desc="the recurring mistakes, what worked, and the general lessons")


class RewriteInstruction(dspy.Signature):
    """You improve the instruction of one step of an LLM program.

    You see the step, its current instruction with its score, earlier instructions with their scores,
    and runs of the program with a critique of each. Write a new, complete instruction for this step:
    keep what works, fix the failures the critiques point to, and state general rules (what the task
    asks, the exact answer format, what to track, common traps) rather than facts about single
    examples. Return only the instruction text."""

    step: str = dspy.InputField(desc="the step's name, inputs and outputs")
    current_instruction: str = dspy.InputField(desc="the instruction to improve, with its score")
    past_instructions: str = dspy.InputField(desc="earlier instructions and their scores")
    runs_and_critiques: str = dspy.InputField(desc="program runs, each with its score and a critique")
    new_instruction: str = dspy.OutputField(desc="the improved instruction, complete and self-contained")


class MergeInstructions(dspy.Signature):
    """You merge instructions written for the same step of an LLM program.

    Each instruction was optimized on a different group of tasks; you see its score on its group and
    the group's size. Write one instruction that works on all those groups: keep rules shared by
    several, keep each group's valuable specific rules (saying which kind of task each applies to),
    and resolve conflicts in favour of the instruction with more evidence (more tasks, higher
    score). Keep the structure of the originals. Return only the merged instruction text."""

    step: str = dspy.InputField(desc="the step's name, inputs and outputs")
    candidates: str = dspy.InputField(desc="the numbered instructions, each with its score and number of tasks")
    merged_instruction: str = dspy.OutputField(desc="one instruction for all the groups")

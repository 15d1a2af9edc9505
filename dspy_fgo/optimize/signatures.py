"""The DSPy signatures FGO speaks to the optimizer LM: describe the task, critique, distill lessons, rewrite, merge.

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


class DescribeTask(dspy.Signature):
    """You read a sample of the tasks one step of an LLM program is given, with their expected
    outputs, and describe the kind of task in general terms: what is asked, what the answer looks
    like (its format), and what makes it hard. Do not retell any single example: no names,
    numbers or sentences taken from one of them. At most 4 sentences."""

    step: str = dspy.InputField(desc="the step's name, inputs and outputs")
    examples: str = dspy.InputField(desc="a few task inputs with their expected outputs")
    task_description: str = dspy.OutputField(desc="the kind of task, in general terms")


class DistillLessons(dspy.Signature):
    """You condense critiques of an LLM program's runs into lessons for its instructions.

    Keep only lessons that would help on other tasks of the same kind; merge duplicates; drop
    anything about one particular example (its names, numbers, wording). Write at most 6 short
    bullet points, the most important first."""

    critiques: str = dspy.InputField(desc="critiques or lesson lists to condense")
    lessons: str = dspy.OutputField(desc="at most 6 general, de-duplicated lessons as bullet points")


class RewriteInstruction(dspy.Signature):
    """You improve the instruction of one step of an LLM program.

    You see the kind of task, the current instruction and how earlier instructions scored, lessons
    learned from the program's runs, and one or two example runs. Write a new, complete instruction
    for this step: keep what works, act on the lessons, and state general rules (what the task
    asks, the exact answer format, common traps). Never mention a particular example's names,
    numbers or sentences: the instruction must work on new inputs. Return only the instruction."""

    step: str = dspy.InputField(desc="the step's name, inputs and outputs")
    task_description: str = dspy.InputField(desc="the kind of task this step is given")
    current_instruction: str = dspy.InputField(desc="the instruction to improve")
    score_history: str = dspy.InputField(desc="earlier instructions and their held-out scores")
    lessons: str = dspy.InputField(desc="general lessons from critiques of the program's runs")
    example_runs: str = dspy.InputField(desc="one or two runs, for illustration only")
    new_instruction: str = dspy.OutputField(desc="the improved instruction, complete and self-contained")


class MergeInstructions(dspy.Signature):
    """You merge instructions written for the same step of an LLM program.

    Each instruction was optimized on a different group of tasks; you see its score on its group and
    the group's size. First analyse: which rules several instructions share, which belong to one
    kind of task only, which conflict. Then write one instruction that works on all those groups:
    state the shared rules once, in general terms; keep a group's specific rule only as a short
    conditional ("for questions that ..., ..."); resolve conflicts in favour of the instruction
    with more evidence. Abstract, do not concatenate: stay within the length limit. Return only the
    merged instruction text."""

    step: str = dspy.InputField(desc="the step's name, inputs and outputs")
    candidates: str = dspy.InputField(desc="the numbered instructions, each with its score and number of tasks")
    length_limit: str = dspy.InputField(desc="the most characters the merged instruction may have")
    analysis: str = dspy.OutputField(desc="shared rules, group-specific rules, conflicts (brief)")
    merged_instruction: str = dspy.OutputField(desc="one instruction for all the groups, within the length limit")

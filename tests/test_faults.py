"""Fault matrix: what a bad optimizer answer, a leaky setting or a failing call does to a run."""

import json
import time

import dspy
import pytest

from conftest import exact, make_examples, optimizer_respond, TOY_Z
from dspy_fgo import FGO, read_candidate
from fakes import FakeLM


@pytest.mark.parametrize(
    "bad_answer",
    ["", "[[ ## new_instruction ## ]] leaked framing", "### Run 1\nInput: question: alpha...\nCritique: copy"],
    ids=["empty", "unparseable", "copy-of-prompt"],
)
def test_bad_rewrites_leave_the_previous_candidate(task_lm, bad_answer):
    def respond(fields, messages):
        if "new_instruction" in fields or "merged_instruction" in fields:
            return {f: bad_answer for f in fields}
        return optimizer_respond(fields, messages)

    student = dspy.Predict("question -> answer")
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=FakeLM(respond), partition_by="category", epochs=2, max_demos=0)
    program = fgo.compile(student, trainset=make_examples(["alpha", "beta"]))
    assert read_candidate(program) == read_candidate(student)
    assert fgo.report_.events.get("proposals_rejected", 0) > 0 or fgo.report_.events.get("critique_calls_failed", 0) > 0


def test_optimizer_call_errors_keep_the_run_going(task_lm):
    def fail(text):
        raise ConnectionError("rate limited")

    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=FakeLM(optimizer_respond, fail=fail),
              partition_by="category", epochs=1)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta"]))
    assert fgo.report_.usage["optimizer"]["errors"] > 0
    assert read_candidate(program)["self"]


def test_api_keys_never_reach_reports_or_checkpoints(tmp_path, task_lm):
    secret = "sk-test-SECRET-0123456789"
    prompt = FakeLM(optimizer_respond, model="fake/optimizer")
    prompt.kwargs["api_key"] = secret
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=prompt, partition_by="category", epochs=1,
              checkpoint_dir=str(tmp_path))
    fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta"]))
    assert secret not in json.dumps(fgo.report_.to_dict())
    assert all(secret not in path.read_text() for path in tmp_path.iterdir())


def test_llm_output_is_never_executed(task_lm, tmp_path):
    # An instruction that looks like code stays text: it is applied as an instruction, nothing more.
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def respond(fields, messages):
        text = f"Answer the question. RULE-alpha RULE-beta {payload}"
        return {f: (text if f != "critique" else "Needs RULE-alpha.") for f in fields}

    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=FakeLM(respond), partition_by="category", epochs=1, max_demos=0)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=make_examples(["alpha", "beta"]))
    assert payload in program.signature.instructions  # the output went all the way through, as text
    assert not marker.exists()


class _FlakyOpenAI:
    """A local OpenAI-compatible endpoint that fails as told, then answers; counts requests."""

    def __init__(self, fail: str, failures: int | None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        endpoint = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                endpoint.requests += 1
                if failures is None or endpoint.requests <= failures:
                    if fail == "timeout":
                        time.sleep(1.0)  # past the client's timeout
                        return
                    self.send_response({"rate-limit": 429, "server-error": 503}[fail])
                    self.send_header("retry-after", "0")
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "injected fault"}}')
                    return
                content = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
                body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": content}}],
                                   "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lm(self):
        return dspy.LM("openai/flaky", api_base=f"http://127.0.0.1:{self.server.server_port}/v1", api_key="x",
                       num_retries=2, timeout=0.3, cache=False)


@pytest.mark.parametrize("fail", ["rate-limit", "server-error", "timeout"])
def test_real_lm_faults_are_retried_then_scored_as_failures(fail, prompt_lm):
    """Through dspy.LM and LiteLLM, as with a hosted model: transient faults are retried away;
    faults that persist past the retries score the run 0, and the compile still finishes."""
    trainset = make_examples(["alpha"], per_category=2)

    def compile_with(endpoint):
        fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=endpoint.lm(), prompt_model=prompt_lm, partition_by="category", epochs=1)
        fgo.compile(dspy.Predict("question -> answer"), trainset=trainset)
        return fgo.report_

    transient = _FlakyOpenAI(fail, failures=1)
    report = compile_with(transient)
    assert report.events.get("program_errors", 0) == 0  # the one fault was retried away
    assert transient.requests == report.usage["task"]["billed_calls"] + 1

    persistent = _FlakyOpenAI(fail, failures=None)
    report = compile_with(persistent)
    assert report.events["program_errors"] >= len(trainset)  # every run failed after its retries...
    assert persistent.requests > report.usage["task"]["calls"]  # ...which were tried more than once
    assert report.selection["returned"] in ("root", "instructions unchanged", "unoptimized")  # and the compile still returned a program


def test_copies_examples_tells_one_examples_text_from_the_tasks_wording():
    from dspy_fgo.optimize.guards import copies_examples

    shared = "If you follow these instructions, do you return to the starting point?"
    examples = [dspy.Example(question=f"{shared} Take {n} steps. Turn left. Take {n + 1} steps backward.").with_inputs("question")
                for n in (2, 5, 7)]
    current = "Answer the question."
    # Quoting one example's own steps is memorizing it; quoting the wording all examples share is not.
    assert copies_examples("Remember: take 5 steps. Turn left. Take 6 steps backward.", current, examples)
    assert not copies_examples(f"Read the question: {shared} Track each step.", current, examples)
    # Text the current instruction already holds is not a new copy; short overlaps are not copies.
    assert not copies_examples(current + " take 5 steps turn left take 6", current + " take 5 steps turn left take 6",
                               examples)
    assert not copies_examples("Take 5 steps, then decide.", current, examples)
    assert not copies_examples("Take 5 steps. Turn left. Take 6 steps backward.", current, [])


def test_an_instruction_that_retells_one_examples_numbers_is_a_copy():
    from dspy_fgo.optimize.guards import copies_examples

    paths = ["M 53.87,61.90 L 52.73,49.16 L 63.98,54.06 L 53.87,61.90", "M 10.00,20.00 L 30.00,40.00 L 10.00,20.00"]
    examples = [dspy.Example(question=f'This SVG path element <path d="{d}"/> draws a').with_inputs("question")
                for d in paths]
    current = "Answer the question."
    # The 1.5B's geometric_shapes proposal (v7 seed 2): one path's points, one per line, no six words alike.
    assert copies_examples("The correct order of points for a hexagon is:\n1. Start at the first point "
                           "(53.87, 61.90)\n2. Move to the second point (52.73, 49.16)", current, examples)
    # One such number, numbers every example holds, or short ones are not a copy.
    assert not copies_examples("Count the points; stop at 53.87 if needed.", current, examples)
    shared = [dspy.Example(question=f"Path {d} in a 100 by 100 box").with_inputs("question") for d in paths]
    assert not copies_examples("The box is 100 by 100; count the corners (3 or 4).", current, shared)


def test_an_instruction_that_states_one_examples_answer_is_a_copy():
    from dspy_fgo.optimize.guards import copies_examples

    examples = [dspy.Example(question=f"Today is day {n} of March 1966. What is the date 24 hours later?",
                             answer=f"03/{n + 1:02d}/1966").with_inputs("question") for n in (2, 5, 7)]
    current = "Answer the question."
    # A training question solved (the 1.5B wrote this for BBH's date task): a copy, however it is worded.
    assert copies_examples("Add 24 hours to the day. Therefore, the date 24 hours later is 03/03/1966.",
                           current, examples)
    assert not copies_examples("Add 24 hours to the day and write the date as MM/DD/YYYY.", current, examples)
    # An answer the current instruction already states, or a one-word label, is not a new copy.
    assert not copies_examples(current + " For example 03/03/1966.", current + " For example 03/03/1966.", examples)
    yes_no = [dspy.Example(question=f"Is {n} even?", answer="No").with_inputs("question") for n in (1, 3)]
    assert not copies_examples("Answer Yes or No.", current, yes_no)


def test_class_labels_and_constants_are_not_copies_but_one_examples_answer_still_is():
    from dspy_fgo.optimize.guards import copies_examples

    current = "Answer the question."
    reviews = [dspy.Example(question=f"Review {i}: {text}", answer=label).with_inputs("question")
               for i, (text, label) in enumerate([("Loved every minute.", "very positive"),
                                                  ("Dull and too long.", "negative"),
                                                  ("The invoice is attached.", "not applicable")])]
    # Multi-word class labels are what a general instruction names.
    assert not copies_examples('Answer "very positive" for unreserved praise, "negative" for complaints and '
                               '"not applicable" when the text is not a review.', current, reviews)
    # A phrase answer of one example is still a copy.
    places = [dspy.Example(question=f"Where is the ball in scene {i}?", answer=answer).with_inputs("question")
              for i, answer in enumerate(["under the red table", "on the shelf"])]
    assert copies_examples("The ball is under the red table.", current, places)
    # Constants of a rule that single examples happen to hold are not one example's data...
    sums = [dspy.Example(question=q, answer=a).with_inputs("question")
            for q, a in [("How many days are in 365 days and 2 weeks?", "379"),
                         ("How many cm are 100 cm and 3 m?", "400")]]
    assert not copies_examples("A year has 365 days; a metre has 100 cm. Convert, then add.", current, sums)
    # ...but two numbers of the same example are.
    assert copies_examples("Add 365 days and 379 days.", current, [sums[0], dspy.Example(
        question="What is 365 + 14? The total 379 is asked.", answer="379").with_inputs("question"), sums[1]])


def test_an_agents_long_instruction_may_be_rewritten_at_its_length():
    from dspy_fgo.optimize.guards import Budget, clean_instruction

    tools = "".join(f"({i}) tool_{i}, whose description is <desc>looks up field {i}</desc>.\n" for i in range(80))
    current = "Use the tools to find the reference.\n" + tools
    assert len(current) > Budget().max_instruction_chars
    rewrite = "Call tool_3 once per field; finish as soon as a reference is found.\n" + tools
    assert clean_instruction(rewrite, Budget(), current=current) == rewrite.strip()
    assert clean_instruction(rewrite, Budget()) is None  # from a short instruction, that length is runaway
    assert clean_instruction(rewrite * 2, Budget(), current=current) is None


def test_a_rewrite_quoting_one_training_example_is_refused(task_lm):
    trainset = make_examples(["alpha"])  # "alpha question number 0 about alpha things", ...

    def respond(fields, messages):
        if "new_instruction" in fields:
            return {"new_instruction": "Answer RULE-alpha. Recall: alpha question number 1 about alpha things."}
        return optimizer_respond(fields, messages)

    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=FakeLM(respond), partition_by="category", epochs=2, max_demos=0)
    program = fgo.compile(dspy.Predict("question -> answer"), trainset=trainset)
    assert read_candidate(program) == read_candidate(dspy.Predict("question -> answer"))
    assert fgo.report_.events["proposals_copying_examples"] >= 1


def test_an_echoed_score_line_is_dropped_from_a_rewrite():
    from dspy_fgo.optimize.guards import Budget, clean_instruction

    assert clean_instruction("(score 0.00)\nExtract the number.", Budget()) == "Extract the number."


def test_a_rewrite_that_talks_about_the_instruction_is_refused():
    from dspy_fgo.optimize.guards import Budget, clean_instruction

    # Both seen from the 1.5B on BBH-15: text about the rewrite, naming our step, not an instruction.
    for text in ("To improve the instruction for step `self`, we should start by identifying the shape.",
                 "The new instruction should be a complete and self-contained instruction for the step `self`:"):
        assert clean_instruction(text, Budget()) is None
    assert clean_instruction("Identify the shape the SVG path draws.", Budget()) is not None


def test_a_rewrite_that_restates_the_step_description_is_refused(task_lm):
    from fakes import field_value

    def respond(fields, messages):
        if "new_instruction" in fields:  # the 1.5B did this with tool descriptions
            return {"new_instruction": "The " + field_value(messages, "step")}
        return optimizer_respond(fields, messages)

    student = dspy.Predict("question -> answer")
    fgo = FGO(accept_z=TOY_Z, metric=exact, task_model=task_lm, prompt_model=FakeLM(respond), partition_by="category", epochs=1, max_demos=0)
    program = fgo.compile(student, trainset=make_examples(["alpha"]))
    assert read_candidate(program) == read_candidate(student)
    assert fgo.report_.events["proposals_rejected"] >= 1


def test_the_optimizer_sees_the_expected_answer_not_the_examples_metadata():
    from dspy_fgo.optimize.prompts import format_run
    from dspy_fgo.run.runtime import Step, Trajectory

    example = dspy.Example(question="Which order? (A) a (B) b", answer="b", task="hyperbaton", targets=["b"],
                           id=1537).with_inputs("question")
    run = Trajectory(key=0, example=example, prediction=dspy.Prediction(answer="a"),
                     steps=[Step("self", {"question": example.question}, {"answer": "a"})], score=0.0)
    text = format_run(run, limit=2000)
    assert "Expected: answer: b" in text and "1537" not in text and "hyperbaton" not in text
    # A program whose outputs match no label still sees every label.
    other = Trajectory(key=0, example=example, prediction=None, steps=[], score=0.0, error="boom")
    assert "id=1537" in format_run(other, limit=2000)

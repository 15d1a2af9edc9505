"""Optimize (the paper's step 2, Algorithm 1): each partition's program is run, its runs critiqued
and distilled into lessons, and its instructions rewritten and selected on evidence (``reflect``,
``lessons``, ``prompts``, ``guards``, ``signatures``); its solved runs become demos (``demos``);
or another teleprompter optimizes it (``inner``); anywhere, as a job for an executor (``remote``)."""

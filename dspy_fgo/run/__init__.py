"""Running a compile: the program and optimizer calls with their threads, cache and budgets
(``runtime``, ``accounting``), checkpoints (``checkpoint``), partitions on other processes or
machines (``executors``), and progress bars (``progress``)."""

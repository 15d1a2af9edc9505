"""Running a compile: the program and optimizer calls with their threads, cache and budgets
(``runtime``, ``accounting``), checkpoints (``checkpoint``, ``fingerprint``), and progress bars
(``progress``)."""

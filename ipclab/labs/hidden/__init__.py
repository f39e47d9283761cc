"""The grader's hidden checks, one module per lab (``lab01`` ... ``lab06``), each with ``PARTS``.

The student's notebook never runs these; ``python -m ipclab grade`` does
(:mod:`ipclab.grading`), after the visible checks of the same part.
"""

"""What the user sees in a terminal, a pipe or a notebook: progress lines, filtered noise, thread advice, a readable
``--help`` and command-line mistakes as one sentence.
"""

"""Run directories and what is recorded about a run: the directory and its version lock (``directory``), the records
a resume checks (``records``), one location for every process of a launch (``agreement``), live pids (``processes``).
"""

"""Chaos, restart and soak runs: many worker processes, killed and restarted, on one database.

``python -m tests.chaos.worker URL`` runs a worker of the chaos workload and
``python -m tests.chaos.client URL`` a client fed commands on stdin; ``driver.py`` runs them,
kills them, and checks every invariant at the end. See docs/reliability.md.
"""

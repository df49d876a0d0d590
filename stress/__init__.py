"""The stress run: many keep-alive clients with faults armed on a known fraction, ledger checked exactly.

``python -m stress --seconds N`` (or ``python stress/run.py --seconds N``); see ``run.py``.
"""

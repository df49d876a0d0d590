"""The speed and memory figures of pytest-connfault, side by side with the alternatives and the floor.

Run ``python -m benchmarks`` for the full run (a few minutes), ``python -m benchmarks --quick`` for a
reduced smoke run (no figure from it means anything), ``--write-results`` to refresh
``benchmarks/RESULTS.md``. Each measurement module has one ``run(config)`` that returns table rows;
work that must start in a clean interpreter runs through ``python -m benchmarks._worker``.

Modules:

``startstop``   (1) start+stop of a server alone
``pertest``     (2) per-test cost through pytest, generated test files in a subprocess
``throughput``  (3) keep-alive throughput with http.client and httpx; (7) scaling with open connections
``commands``    (4) ``reset_idle()`` / ``close_idle()`` until every client saw its RST/FIN
``memory``      (5) RSS per idle connection, and over many requests on one connection
``matrix``      (6) wall time of ``pytest --connfault``
``profiling``   cProfile of the server's loop thread and the caller, for start+stop and requests
"""

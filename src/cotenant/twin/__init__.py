"""The digital twin: scenario files, simulated runs, trace replays and their reports.

``scenario`` reads a scenario file; ``runtime`` wires a simulated engine from it and
runs it; ``replay`` turns a trace into scenarios and runs policies side by side;
``report`` and ``htmlreport`` (with ``templates/``) present the results. The live
server borrows only the scenario file format (``twin.scenario``) to seed its store.
"""

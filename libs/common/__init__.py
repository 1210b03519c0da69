"""Shared by every Bastion service: packages in one import order, each importing only those below it.

    contracts < settings < runtime < bus < {audit, supply_chain, analytics, cedar, web}

`contracts` is data (messages, subjects, configuration models), `settings` the environment each
service reads, `runtime` the process (runner, walls, metrics, tracing, probes), `bus` NATS, and the
top row the shared parts of one concern each. tests/unit/test_architecture.py holds the order.
Services depend on this package and on third-party libraries only, never on each other.
"""

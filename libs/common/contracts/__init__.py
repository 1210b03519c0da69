"""Contracts: the data every service and every other package of `libs.common` agrees on.

Bus messages, subjects, error kinds, the configuration's models and their sections, pins, names and
keys. Data only: nothing here opens a connection, a socket or a process (tests/unit/test_architecture.py).
Below: nothing of ours. Above: settings, runtime, bus and the rest.
"""

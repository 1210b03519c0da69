"""Contracts shared by every Bastion service: messages, subjects, settings, config, naming.

Services depend on this package and on third-party libraries only, never on each other.
"""

"""The `a2a` server kind: an A2A agent's skills served as tools (docs/a2a.md)."""

"""One package per service.

Each its own process (`python -m services.<name>`), talking to the others only over NATS through the
contracts in `libs.common`."""

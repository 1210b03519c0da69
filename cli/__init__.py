"""The `bastion` command line: `up` runs the embedded stack, other commands talk to it."""

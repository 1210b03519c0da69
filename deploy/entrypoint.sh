#!/bin/sh
# The image's entrypoint (`bastion-entrypoint`): names this process start, then runs the command.
#
# Policy, executor and codemode answer liveness probes on a NATS subject named after
# BASTION_INSTANCE (by default host name and pid). In a container both repeat when it restarts
# (same host name, same pid), so the new process would answer the probes meant for the calls the
# killed one held, and their callers would wait for the call timeout instead of failing within
# seconds (docs/architecture.md, "When a replica dies mid-call"). So each start gets a new name.
# An explicit BASTION_INSTANCE wins: ingress, admin and codemode name their audit journal's slot
# after it, and that slot must stay the same across restarts of one replica for the journal to be
# replayed (codemode adds a suffix of its own to its liveness name at every start).
set -eu
if [ -z "${BASTION_INSTANCE:-}" ]; then
  BASTION_INSTANCE="${HOSTNAME:-bastion}-$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
  export BASTION_INSTANCE
fi
exec "$@"

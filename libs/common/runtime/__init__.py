"""Runtime: what every service process runs on, whatever it does.

The runner (start, signals, shutdown), the walls a process confines itself in (`walls/`), logs,
metrics, tracing and semantic conventions, probes, patience (retries), task helpers, sealing of
stored secrets and the refusal log.
Below: contracts and settings. Above: bus and the rest.
"""

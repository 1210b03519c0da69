"""What ingress knows of the upstreams' tools, prompts and resources: the aggregated catalog
held in memory (`aggregated`) and each key's cached `tools/list` (`tool_lists`).

Below: auth (a key's record). Above: sessions, sending, modes, tasks, web, the handlers.
"""

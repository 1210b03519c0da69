"""What ingress knows of the upstreams' tools, prompts and resources.

The aggregated catalog held in memory (`aggregated`) and each key's cached `tools/list` (`tool_lists`).

Below: nothing of ingress's. Above: sessions, sending, modes, tasks, web, the handlers.
"""

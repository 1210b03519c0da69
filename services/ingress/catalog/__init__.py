"""The aggregated catalog held in memory (`aggregated`), each key's cached `tools/list`
(`tool_lists`) and the gateway as an MCP Registry (`registry_out`).
"""

"""Audit: the audit trail every service writes.

The hash chain, event fields and content digests, the local journal and the publisher that drains
it onto the bus, and the per-service trail that ties them together.
Below: contracts, settings, runtime and bus. Beside it: supply_chain, analytics, cedar and web.
"""

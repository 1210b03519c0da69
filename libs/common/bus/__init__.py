"""Bus: the NATS side of every service.

Connecting (`nats`), the bus client and its local lane, relaying requests (`relay`, `acknowledger`,
`timetable`, `rejoin`), KV watches, blob (object store) transfers, streams and stores, the roles'
permissions and work signing.
Below: contracts, settings and runtime. Above: audit, supply_chain, analytics, cedar and web.
"""

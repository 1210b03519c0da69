"""Analytics: read-only SQL over the audit tables.

The query messages and their limits (`queries`), the read-only check of the SQL (`analytics_sql` and
its helpers), binding parameters for ClickHouse and `asking` the audit service over NATS.
Below: contracts, settings, runtime and bus. Beside it: audit, supply_chain, cedar and web.
"""

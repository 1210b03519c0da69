"""Tool-definition pinning (docs/supply-chain.md): which listed definitions the executor serves.

Entry points for the executor's listing hook: `decide` (pure) and the `PinOutcome` it returns
(`served`, `refusal`, `writes`, `baseline`, `drift`). Hashing, records and approvals are the
contract in `libs.common.contracts.pins`; diffs in `libs.common.supply_chain.pin_diff`; signed catalogs in
`libs.common.supply_chain.catalog_manifest`.
"""

from .decide import DRIFT_REASONS, PinDecision, PinOutcome, Verdict, decide, quarantine_message

__all__ = ["DRIFT_REASONS", "PinDecision", "PinOutcome", "Verdict", "decide", "quarantine_message"]

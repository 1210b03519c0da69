"""Codemode's side of the request path (`services.codemode.gateway.PolicyGateway`) sends a script's
tool call again while no executor is subscribed and one answered a moment ago (`libs.common.bus.rejoin`),
as ingress does: the call runs on the executor that takes the stopped one's place. Real NATS,
policy, executor and upstream; the gateway object is the one the codemode service calls through."""

from __future__ import annotations

import pytest

from libs.common.bus.blobs import Blobs
from libs.common.bus.nats import connect
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import Caller, ToolCall
from libs.common.settings import CodeModeSettings
from services.codemode.gateway import PolicyGateway
from tests.support.executor_away import answered_by_a_new_executor, counted
from tests.support.gateway import ADMIN_KEY, running_gateway

pytestmark = pytest.mark.integration


def _echo(text: str) -> ToolCall:
    caller = Caller(key_id=key_id(ADMIN_KEY), key_name="admin")
    return ToolCall(
        caller=caller, server="echo", tool="echo", name="echo__echo", arguments={"text": text}, timeout=30.0
    )


async def test_a_scripts_call_that_finds_no_executor_runs_on_the_one_that_takes_its_place(
    nats_url, redis_url, tmp_path
):
    async with running_gateway(nats_url, redis_url, tmp_path) as gw:
        nc = await connect(nats_url, "test-codemode")
        try:
            # the default window (`BASTION_REJOIN_WAIT`): long enough for a stop and start on a loaded machine
            settings = CodeModeSettings(nats_url=nats_url)
            gateway = PolicyGateway(nc, settings, await Blobs.open(nc))
            await gateway.start()
            assert (await gateway.call(_echo("first"))).result_value()["content"][0]["text"] == "first"
            outcome = await answered_by_a_new_executor(
                gw, lambda: gateway.call(_echo("later")), lambda: counted("bastion_codemode_calls_sent_again")
            )
            assert outcome.error is None, outcome.error
            assert outcome.result_value()["content"][0]["text"] == "later"
        finally:
            await nc.close()

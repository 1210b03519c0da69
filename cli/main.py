"""The `bastion` command line. Thin on purpose: each command delegates to a module that is tested alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .admin_commands import register as register_admin_commands
from .approval_commands import register as register_approval_commands
from .catalog_commands import catalog_app
from .terminal import FlagsGroup, console
from .tool_commands import tools_app

__all__ = ["app"]

app = typer.Typer(
    name="bastion",
    help="Bastion: a governed MCP gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FlagsGroup,
)
config_app = typer.Typer(help="Work with configuration files.", no_args_is_help=True, cls=FlagsGroup)
audit_app = typer.Typer(help="Read the audit trail of a running stack.", no_args_is_help=True, cls=FlagsGroup)
analytics_app = typer.Typer(help="Ask the audit store questions (read-only SQL).", no_args_is_help=True, cls=FlagsGroup)
app.add_typer(config_app, name="config")
app.add_typer(audit_app, name="audit")
app.add_typer(analytics_app, name="analytics")
register_admin_commands(app)
app.add_typer(tools_app, name="tools")
app.add_typer(catalog_app, name="catalog")
register_approval_commands(app)

NatsUrl = Annotated[str | None, typer.Option(help="NATS of the stack (default: BASTION_NATS_URL, then stack.json).")]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="State, logs and stack.json (default: the config's stack.data_dir, '.bastion')."),
]


@app.command()
def up(
    config: Annotated[Path, typer.Option("--config", "-c", help="The config file (YAML or JSON).")],
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Gateway port (default: gateway.port, 8420).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Gateway bind address (default: gateway.host, 127.0.0.1).")] = None,
    data_dir: DataDir = None,
    admin_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Admin service port (default: BASTION_ADMIN_PORT, 8421, else a free one)."),
    ] = None,
    nats_cluster: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Embedded nats-servers: 3 or more run as a cluster with every stream replicated 3 times "
            "(default: stack.nats_cluster, 1). Ignored with an external NATS.",
        ),
    ] = None,
    ingress_replicas: Annotated[
        int,
        typer.Option(
            min=1,
            max=32,
            help="Ingress processes sharing the gateway's port (the kernel spreads connections among them; "
            "a session made on one is served by any).",
        ),
    ] = 1,
) -> None:
    """Run the whole gateway locally: NATS, Valkey and every service, until Ctrl-C."""
    from .up import run_up

    raise typer.Exit(
        run_up(
            config,
            host=host,
            port=port,
            data_dir=data_dir,
            admin_port=admin_port,
            nats_cluster=nats_cluster,
            ingress_replicas=ingress_replicas,
        )
    )


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="The config file (YAML or JSON).")]) -> None:
    """Validate a config file and summarize it (never showing secrets).

    Its Cedar policies are compiled and listed, and OpenAPI documents are read and what they turn into
    (or refuse) is listed."""
    from libs.common.cedar.cedar_policies import check_config_policies
    from libs.common.contracts.config import ConfigError
    from libs.common.settings.config_file import load_config

    from .apply import key_records
    from .openapi_check import load_openapi_servers, print_openapi_report
    from .policy_report import policy_problem, print_policy_report
    from .summary import print_summary

    try:
        config = load_config(file)
        check_config_policies(config.policies, str(file))
        key_records(config)
        apis = load_openapi_servers(config, str(file))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        if (problem := policy_problem(file)) is not None:
            print(problem, file=sys.stderr)  # the same problem, at the file's own line
        raise typer.Exit(2) from None
    out = console()
    out.print(f"[green]ok[/]: {escape(str(file))} is valid")
    print_summary(config, out)
    print_policy_report(file, config.policies, out)
    print_openapi_report(apis, out)


@config_app.command("apply")
def config_apply(
    file: Annotated[Path, typer.Argument(help="The config file (YAML or JSON).")],
    nats_url: Annotated[
        str | None, typer.Option(help="NATS to write to (default: BASTION_NATS_URL, then stack.json).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write a file's servers and keys into a running deployment's NATS KV (every replica sees it)."""
    from libs.common.cedar.cedar_policies import check_config_policies
    from libs.common.contracts.config import ConfigError
    from libs.common.runtime.sealing import Sealer, SealingError
    from libs.common.settings.config_file import load_config

    from .apply import apply_config, key_records
    from .stackfile import find_admin_credentials, find_nats_url
    from .tool_commands import run_as_admin

    try:
        config = load_config(file)
        check_config_policies(config.policies, str(file))
        key_records(config)
        url = find_nats_url(nats_url, data_dir or Path(".bastion"))
        creds = find_admin_credentials(data_dir or Path(".bastion"))
        sealer = Sealer(creds.secrets_key)
    except (ConfigError, LookupError, SealingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None

    run_as_admin(
        url,
        creds.nkey_seed_file,
        lambda nc: apply_config(nc, config, sealer),
        within=30,
        failing=f"could not apply to NATS at {url}",
    )
    console().print(f"[green]applied[/]: {len(config.mcp_servers)} server(s), {len(config.keys)} key(s)")


@config_app.command("nats-credentials")
def config_nats_credentials(
    out: Annotated[Path, typer.Argument(help="Directory for the seeds and authorization.conf (made 0700).")],
) -> None:
    """Make one NATS NKey per service role and the nats-server `authorization` block for them.

    The block gives each role only its subjects (for a production NATS; `bastion up` does this by
    itself)."""
    from libs.common.bus.permissions import ADMIN

    from .credentials import AUTHORIZATION_FILE, write_nats_credentials

    seeds = write_nats_credentials(out)
    out_console = console()
    out_console.print(f"[green]wrote[/] {escape(str(out / AUTHORIZATION_FILE))}: `include` it in nats-server.conf")
    for role, path in seeds.items():
        variable = "BASTION_ADMIN_NATS_NKEY_SEED_FILE (ingress with the admin API), or BASTION_NATS_NKEY_SEED_FILE"
        who = (
            f"{variable} for `bastion config apply` / `bastion audit tail`"
            if role == ADMIN
            else f"BASTION_NATS_NKEY_SEED_FILE of every {role} replica"
        )
        out_console.print(f"  {escape(str(path))}  ->  {escape(who)}")
    out_console.print("Each seed is a secret: give it only to the processes of its role.")


@audit_app.command("tail")
def audit_tail(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many recent events to show.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Show recent tool calls, newest last."""
    import asyncio

    from .audit import tail  # written separately; imported only when used

    url, seed = _stack(nats_url, data_dir)
    try:
        code = asyncio.run(tail(url, limit, follow, console(), nkey_seed_file=seed))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _stack(nats_url: str | None, data_dir: Path | None) -> tuple[str, str]:
    """The running stack's NATS URL and the admin role's NKey seed file (empty if none)."""
    from .stackfile import find_admin_credentials, find_nats_url

    try:
        url = find_nats_url(nats_url, data_dir or Path(".bastion"))
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    return url, find_admin_credentials(data_dir or Path(".bastion")).nkey_seed_file


@audit_app.command("verify")
def audit_verify(
    since: Annotated[
        str | None,
        typer.Option(help="Check only events from this time: ISO 8601 (UTC unless it says) or a duration ago (24h)."),
    ] = None,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Check the stored audit events against their hash chains and signed checkpoints.

    And say which producer vouches for each chain: OK, or the first modified, deleted, inserted or
    reordered row, or the events the writer flagged or refused (exit 1; 2 when the check could not run)."""
    import asyncio

    from .analytics import CliFailure, parse_time
    from .audit import verify

    try:
        start = parse_time(since) if since is not None else None
    except CliFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    url, seed = _stack(nats_url, data_dir)
    raise typer.Exit(asyncio.run(verify(url, start, console(), nkey_seed_file=seed)))


@audit_app.command("export")
def audit_export(
    since: Annotated[str, typer.Option(help="From this time (inclusive): ISO 8601 or a duration ago (24h, 7d).")],
    until: Annotated[str, typer.Option(help="Up to this time (exclusive); default now.")] = "0s",
    fmt: Annotated[str, typer.Option("--format", help="Output format: jsonl (one event per line).")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")] = None,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Stream audit events as JSON lines for a SIEM, oldest first, with progress on a terminal."""
    import asyncio

    from .analytics import CliFailure, export, parse_time

    if fmt != "jsonl":
        print(f"error: unknown --format {fmt!r}: only jsonl", file=sys.stderr)
        raise typer.Exit(2)
    try:
        start, end = parse_time(since), parse_time(until)
    except CliFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    url, seed = _stack(nats_url, data_dir)
    err = console(stderr=True)
    out = output.open("w", encoding="utf-8") if output is not None else sys.stdout
    try:
        written = asyncio.run(
            export(url, start, end, out, progress=err if err.is_terminal else None, nkey_seed_file=seed)
        )
    except CliFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        if output is not None:
            out.close()
    if output is not None:
        err.print(f"[green]exported[/] {written} event(s) to {escape(str(output))}")


@analytics_app.command("query")
def analytics_query(
    sql: Annotated[str, typer.Argument(help="One SELECT (or WITH ... SELECT); anything else is refused.")],
    fmt: Annotated[str, typer.Option("--format", help="table (for people) or jsonl (one object per row).")] = "table",
    max_rows: Annotated[int, typer.Option(min=1, max=100_000, help="Rows the answer may have.")] = 10_000,
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds the query may run.")] = 10.0,
    payloads: Annotated[
        bool,
        typer.Option(help="Read payload columns too (arguments, results, admin records), as an auditor may."),
    ] = False,
    clickhouse_url: Annotated[
        str | None,
        typer.Option(help="Ask a ClickHouse server directly (http(s)://user:pass@host:8123/db), not the stack."),
    ] = None,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Run one read-only SQL query on the audit store (docs/analytics.md has ten ready-made ones)."""
    import asyncio

    from libs.common.analytics.queries import AnalyticsQuery, NotReadOnly

    from .analytics import CliFailure, principal, print_answer, query_clickhouse, query_nats

    if fmt not in ("table", "jsonl"):
        print(f"error: unknown --format {fmt!r}: table or jsonl", file=sys.stderr)
        raise typer.Exit(2)
    try:
        query = AnalyticsQuery(sql=sql, max_rows=max_rows, timeout=timeout, payloads=payloads, principal=principal())
        if clickhouse_url:
            answer = query_clickhouse(clickhouse_url, query)
        else:
            url, seed = _stack(nats_url, data_dir)
            answer = asyncio.run(query_nats(url, query, nkey_seed_file=seed))
    except NotReadOnly as exc:
        print(f"error: query refused: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except (CliFailure, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if answer.error:
        print(f"error: {answer.error}", file=sys.stderr)
        raise typer.Exit(1)
    print_answer(answer, fmt, console(), sys.stdout)


@app.command()
def version() -> None:
    """Print the Bastion version."""
    from libs.common.runtime.package_version import bastion_version

    typer.echo(f"bastion {bastion_version()}")


if __name__ == "__main__":
    app()

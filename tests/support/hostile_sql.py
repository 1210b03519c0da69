"""Hostile analytics queries: every shape of trying to read outside the audit database, change the
engine's limits or write, and payload columns without the auditor's flag. `{canary}` stands for the
path of a file planted where the audit process can read it.

Each query says which wall stops it: `ALLOW_LIST` (refused before the engine sees it) or `ENGINE`
(it passes the allow-list as harmless text: a value, a name the engine does not know)."""

from __future__ import annotations

from typing import Final

__all__ = ["ALLOW_LIST", "ENGINE", "HOSTILE", "NAMES_RIGHT_OF_IN", "PAYLOAD_PEEKS"]

ALLOW_LIST: Final = "allow-list"
ENGINE: Final = "engine"
_PASSES: Final = (
    "SELECT 1 /* outer /* inner */ , file('{canary}') */",  # a nested comment: only `SELECT 1` is run
    "SELECT * FROM `system.one`",  # one name, looked up in bastion: no such table
    "SELECT {p:String} AS p",
    "SELECT count() FROM bastion.audit_events WHERE key_name = {k:String}",
)

_QUERIES: Final[tuple[str | tuple[str, dict[str, str]], ...]] = (
    # the file() function, every way of spelling and hiding it
    "SELECT file('/proc/self/environ')",
    "SELECT file('{canary}')",
    "SELECT FILE('{canary}')",
    "SELECT fIlE('{canary}')",
    "SELECT `file`('{canary}')",
    "SELECT \"file\"('{canary}')",
    "SELECT /* hi */ file /* there */ ('{canary}')",
    "SELECT file\n('{canary}')",
    "SELECT 1 -- a comment\n, file('{canary}')",
    "SELECT 1 # a comment\n, file('{canary}')",
    "SELECT 1 /* outer /* inner */ , file('{canary}') */",
    "SELECT 'it''s' AS a, file('{canary}')",
    "SELECT 'back\\\\' AS a, file('{canary}'), 'x'",
    "SELECT $$ quoted $$ AS a, file('{canary}')",
    "SELECT f\u0456le('{canary}')",  # a Cyrillic i
    "SELECT `fil\\x65`('{canary}')",
    "SELECT ｆｉｌｅ('{canary}')",  # fullwidth letters
    "SELECT substring(file('/proc/self/environ'), 1, 200)",
    "SELECT length(file('{canary}'))",
    "SELECT concat('', file('{canary}'))",
    "SELECT if(1, file('{canary}'), '')",
    "SELECT multiIf(0, '', file('{canary}'))",
    "SELECT arrayMap(x -> file(x), ['{canary}'])",
    "SELECT arrayFilter(x -> length(file(x)) > 0, ['{canary}'])",
    "SELECT arrayJoin([file('{canary}')])",
    "SELECT sumIf(1, file('{canary}') != '')",
    "WITH file('{canary}') AS f SELECT f",
    "WITH t AS (SELECT file('{canary}') AS c) SELECT c FROM t",
    "SELECT 1 UNION ALL SELECT file('{canary}')",
    "SELECT (SELECT file('{canary}'))",
    "SELECT count() FROM bastion.audit_events WHERE key_name = file('{canary}')",
    "SELECT key_name FROM bastion.audit_events WHERE key_name IN (SELECT file('{canary}'))",
    # table functions, as tables and as scalars
    "SELECT * FROM file('{canary}', 'LineAsString')",
    "SELECT * FROM file('{canary}', LineAsString, 'line String')",
    "SELECT k.key_name FROM bastion.audit_events AS k JOIN file('{canary}', 'LineAsString') AS f ON 1",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/key', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1', 'system', 'one')",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM clusterAllReplicas('default', system, one)",
    "SELECT * FROM fileCluster('default', '{canary}')",
    "SELECT * FROM executable('cat /proc/self/environ', 'TSV', 'x String')",
    "SELECT * FROM input('x String')",
    "SELECT * FROM format(LineAsString, 'abc')",
    "SELECT * FROM merge('system', '^one$')",
    "SELECT * FROM merge(REGEXP('^sys'), '.*')",
    "SELECT * FROM view(SELECT 1)",
    "SELECT * FROM dictionary('secrets')",
    "SELECT dictGet('secrets', 'value', 1)",
    "SELECT * FROM generateRandom('a String')",
    "SELECT * FROM loop(bastion.audit_events)",
    "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "SELECT url('http://127.0.0.1:9/')",
    "SELECT remote('127.0.0.1', system.one)",
    # the system database and information_schema, directly and through aliases
    "SELECT * FROM system.one",
    "SELECT name, value FROM system.settings",
    "SELECT * FROM SYSTEM.ONE",
    "SELECT * FROM `system`.`one`",
    'SELECT * FROM "system"."processes"',
    "SELECT * FROM `system.one`",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM INFORMATION_SCHEMA.COLUMNS",
    "WITH x AS (SELECT * FROM system.one) SELECT * FROM x",
    "SELECT a.key_name FROM bastion.audit_events AS a JOIN system.users AS u ON 1",
    "SELECT (SELECT count() FROM system.tables)",
    "SELECT * FROM system.one AS bastion",
    "SELECT 1 FROM bastion.audit_events WHERE 1 IN (SELECT 1 FROM system.one)",
    "SELECT * FROM default.audit_events",
    "SELECT * FROM bastion.audit_events.x",
    # settings and host functions
    "SELECT getSetting('max_memory_usage')",
    "SELECT getServerSetting('path')",
    "SELECT currentUser()",
    "SELECT currentProfiles()",
    "SELECT currentDatabase()",
    "SELECT hostName()",
    "SELECT version()",
    "SELECT getMacro('replica')",
    "SELECT filesystemAvailable()",
    "SELECT arrayMap(x -> getSetting(x), ['readonly'])",
    "SELECT toString(currentUser())",
    "SELECT sleepEachRow(1) FROM numbers(5)",
    # anything but one SELECT, and clauses that lift limits or write
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_memory_usage = 0",
    "SELECT * FROM (SELECT 1 SETTINGS max_threads = 64)",
    "SELECT 1 FORMAT TabSeparated",
    "SELECT 1 INTO OUTFILE '/tmp/bastion-outfile'",
    "SELECT 1; SELECT file('{canary}')",
    "SET readonly = 0",
    "DROP TABLE bastion.audit_events",
    "INSERT INTO FUNCTION file('/tmp/bastion-written', 'CSV') SELECT 1",
    "KILL QUERY WHERE 1",
    "SYSTEM FLUSH LOGS",
    "EXPLAIN SELECT file('{canary}')",
    "DESCRIBE TABLE system.one",
    "SHOW TABLES FROM system",
    "EXISTS TABLE system.one",
    "OPTIMIZE TABLE bastion.audit_events FINAL",
    "CREATE TABLE bastion.stolen ENGINE = Memory AS SELECT file('{canary}')",
    "ALTER TABLE bastion.audit_events DELETE WHERE 1",
    # parameters are values, never SQL
    ("SELECT {p:String} AS p", {"p": "x') , file('{canary}') --"}),
    ("SELECT count() FROM bastion.audit_events WHERE key_name = {k:String}", {"k": "' OR file('{canary}') != '"}),
    # ... nor names: a table named by a parameter is refused, whichever table it names
    ("SELECT * FROM {t:Identifier}", {"t": "system.one"}),
    ("SELECT count() FROM bastion.{t:Identifier}", {"t": "audit_events"}),
    # ... and a parameter without a typed placeholder is refused: the driver would paste it into the text
    ("SELECT '%(x)s' AS a", {"x": ", file($${canary}$$) AS b, "}),
    ("SELECT '%(x)s' AS a", {"x": " AS p INTO OUTFILE $${canary}.pth$$ --"}),
    ("SELECT '%s' AS a", {"x": ", file($${canary}$$) AS b, "}),
    ("SELECT {p:String} AS p, '%(x)s' AS a", {"p": "", "x": ", file($${canary}$$) AS b, "}),
    ("SELECT '{x:String}' AS a", {"x": "', file('{canary}'), '"}),
    ("SELECT {x} AS a", {"x": "file('{canary}')"}),
    ("SELECT :x AS a", {"x": "file('{canary}')"}),
    # a name on the right of IN is a table to ClickHouse, a column to the parser
    "SELECT 1 WHERE 1 IN system.one",
    "SELECT 5 IN system.numbers",
    "SELECT 0 GLOBAL IN system.one",
    "SELECT 0 NOT IN (system.one)",
    "SELECT notIn(0, system.one)",
    "SELECT 1 IN bastion_other.t",
    "SELECT arrayMap(x -> x IN system.one, [0])",
    "SELECT count() FROM bastion.audit_events WHERE (key_name, ts) IN bastion.audit_events",
)
"""Each query alone, or with the parameters sent beside it."""

HOSTILE: Final[tuple[tuple[str, dict[str, str], str], ...]] = tuple(
    (sql, params, ENGINE if sql in _PASSES else ALLOW_LIST)
    for sql, params in ((query, {}) if isinstance(query, str) else query for query in _QUERIES)
)
"""(SQL, parameters, the wall that stops it): none may return anything read outside the bastion database."""

PAYLOAD_PEEKS: Final = (
    "SELECT arguments FROM bastion.audit_events",
    "SELECT `result` FROM bastion.audit_events",
    "SELECT * FROM bastion.audit_events",
    "SELECT e.* FROM bastion.audit_events AS e",
    "SELECT tuple(*) FROM bastion.audit_events",
    "SELECT * EXCEPT (key_name) FROM bastion.audit_events",
    "SELECT count() FROM bastion.audit_events WHERE result LIKE '%secret%'",
    "SELECT x FROM (SELECT arguments AS x FROM bastion.audit_events)",
    "SELECT COLUMNS('arg') FROM bastion.audit_events",
    "SELECT arguments_sha256, result_sha256 FROM bastion.audit_events",
    "SELECT before, after FROM bastion.audit_events",
    "SELECT count() FROM bastion.audit_events AS a JOIN (SELECT '{}' AS arguments) AS b USING (arguments)",
    "SELECT argMax(result, ts) FROM bastion.audit_events",
    # a WITH name that ClickHouse reads as the table itself
    "WITH 1 AS audit_events SELECT * FROM audit_events",
    "WITH audit_events AS (SELECT * FROM audit_events) SELECT * FROM audit_events",
    "SELECT * FROM audit_events WHERE 1 IN (WITH audit_events AS (SELECT 1) SELECT * FROM audit_events)",
    "WITH a AS (SELECT * FROM audit_events), audit_events AS (SELECT 1 AS x) SELECT * FROM a",
)
"""Queries reading call payloads: refused without the auditor's `payloads` flag."""

NAMES_RIGHT_OF_IN: Final = (
    "SELECT 1 WHERE 1 IN system.one",
    "SELECT 5 IN system.numbers",  # an endless table
    "SELECT 0 GLOBAL IN system.one",
    "SELECT 0 NOT IN system.one",
    "SELECT 0 GLOBAL NOT IN system.one",
    "SELECT 0 IN (system.one)",
    "SELECT 0 IN ((system.one))",
    "SELECT notIn(0, system.one)",
    "SELECT 1 IN bastion_other.t",
)
"""A name on the right of IN, which ClickHouse reads as a table (a column to sqlglot): refused."""

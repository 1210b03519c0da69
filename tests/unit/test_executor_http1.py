"""The executor's HTTP/1.1 client for lean sends (`services.executor.upstreams.mcp.http1`) against a real socket
server on a free port that answers byte for byte what each test writes: keep-alive, chunked and
connection-delimited bodies, interim answers, answers cut short or malformed, TLS."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.executor.upstreams.mcp.http1 import HttpPool
from services.executor.upstreams.mcp.http1_connection import BodyTooLarge, HttpClosed
from tests.support.polling import poll_until

pytestmark = pytest.mark.unit

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

Answer = Callable[[asyncio.StreamWriter, int], Awaitable[None]]


@dataclass
class Request:
    head: list[str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """Accepts connections, reads each request whole, lets `answer` write the raw reply."""

    answer: Answer
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[:-2]
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                headers = dict(line.split(": ", 1) for line in head[1:])
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(head, headers, body))
                await self.answer(writer, len(self.requests))
                if writer.is_closing():
                    return
        finally:
            self.open_now -= 1
            writer.close()


def writing(reply: bytes | Callable[[int], bytes]) -> Answer:
    """An answer that writes `reply` (or `reply(n)` to the n-th request) and nothing else."""

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(reply if isinstance(reply, bytes) else reply(n))

    return answer


answer_ok = writing(OK)


def first_then_ok(first: Answer) -> Answer:
    """An answer that lets `first` answer the first request, and `OK` every later one."""

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            await first(writer, n)
        else:
            writer.write(OK)

    return answer


@dataclass
class Served:
    """A running `Server`, its URL, and a pool on it with headers of its own."""

    state: Server
    url: str
    pool: HttpPool


Scenario = Callable[[Served], Awaitable[None]]
LOOPS: dict[str, Callable[[Awaitable[None]], None]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def on_both_loops(scenario: Scenario) -> Callable[[str], None]:
    """A test of `scenario` on asyncio's own event loop and on uvloop (which the services run on:
    its transports are not `asyncio.Transport`s, and its callbacks come in another order)."""

    async def served() -> None:
        state = Server(answer_ok)
        listening = await asyncio.start_server(state.serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/mcp?x=1"
        pool = HttpPool(url, {"X-Api-Key": "configured", "accept": "text/plain"})
        try:
            await scenario(Served(state, url, pool))
        finally:
            await pool.close()
            listening.close()

    @pytest.mark.parametrize("loop", sorted(LOOPS))
    def test(loop: str) -> None:
        LOOPS[loop](served())

    test.__name__ = test.__qualname__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


async def post(pool: HttpPool, body: bytes = b"{}", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with pool.post(body, headers or {"Accept": "application/json"}) as response:
        return response.status, await response.read()


@on_both_loops
async def test_answers_come_back_on_one_kept_connection(served: Served) -> None:
    state, pool = served.state, served.pool
    for n in range(3):
        assert await post(pool, b'{"n": %d}' % n) == (200, b"{}")
    assert state.connections == 1 and pool.connections == 1
    first = state.requests[0]
    assert first.head[0] == "POST /mcp?x=1 HTTP/1.1"
    assert first.headers["host"].startswith("127.0.0.1:")
    assert first.headers["content-length"] == "8" and first.body == b'{"n": 0}'
    assert first.headers["x-api-key"] == "configured"  # the pool's own headers go on every POST
    assert first.headers["accept"] == "application/json"  # a request's header wins, whatever its case
    assert first.headers["accept-encoding"] == "identity"  # nothing compressed comes back


@on_both_loops
async def test_each_post_carries_its_own_length_and_headers_whatever_came_before(served: Served) -> None:
    """Heads are kept by their headers: the same headers with another body, changed headers, and a
    caller's own content-length (replaced, in its place) must each go out as if built afresh."""
    state, pool = served.state, served.pool
    session = {"Accept": "application/json", "Mcp-Session-Id": "s1"}
    assert await post(pool, b"{}", session) == (200, b"{}")
    assert await post(pool, b'{"longer": true}', session) == (200, b"{}")
    assert await post(pool, b"[]", {**session, "Mcp-Session-Id": "s2"}) == (200, b"{}")
    assert await post(pool, b"[1]", {"Content-Length": "999", "X-After": "1"}) == (200, b"{}")
    sent = [(r.headers["content-length"], r.headers.get("mcp-session-id"), r.body) for r in state.requests]
    assert sent == [("2", "s1", b"{}"), ("16", "s1", b'{"longer": true}'), ("2", "s2", b"[]"), ("3", None, b"[1]")]
    last = state.requests[-1].head
    assert last.index("content-length: 3") < last.index("x-after: 1")  # where the caller put it
    assert not any(line.lower().startswith("content-length: 999") for line in last)


@on_both_loops
async def test_chunked_and_connection_delimited_bodies_arrive_whole(served: Served) -> None:
    state, pool = served.state, served.pool

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            writer.write(b"2\r\nde\r\n0\r\n\r\n")
        else:  # no length: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil")
            await writer.drain()
            writer.write(b" the end")
            writer.close()

    state.answer = answer
    assert await post(pool) == (200, b"abcde")
    assert await post(pool) == (200, b"until the end")
    assert await post(pool) == (200, b"until the end")
    assert state.connections == 2  # chunked kept its connection; the delimited one could not


@on_both_loops
async def test_an_answer_saying_close_is_not_reused(served: Served) -> None:
    state, pool = served.state, served.pool

    state.answer = writing(lambda n: b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n%d" % n)
    assert await post(pool) == (200, b"1")
    assert await post(pool) == (200, b"2")
    assert state.connections == 2


@on_both_loops
async def test_interim_answers_are_skipped(served: Served) -> None:
    state, pool = served.state, served.pool

    state.answer = writing(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n" + OK)
    async with pool.post(b"{}", {}) as response:
        assert response.status == 200 and "link" not in response.headers
        assert await response.read() == b"{}"


@on_both_loops
async def test_repeated_headers_are_joined(served: Served) -> None:
    state, pool = served.state, served.pool

    state.answer = writing(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer a\r\n"
        b"www-authenticate: Basic\r\ncontent-length: 0\r\n\r\n"
    )
    async with pool.post(b"{}", {}) as response:
        assert response.status == 401 and response.headers["www-authenticate"] == "Bearer a, Basic"


@on_both_loops
async def test_an_answer_cut_short_is_a_closed_connection(served: Served) -> None:
    state, pool = served.state, served.pool

    async def cut_short(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        writer.close()

    state.answer = first_then_ok(cut_short)
    with pytest.raises(HttpClosed) as raised:
        await post(pool)
    assert isinstance(raised.value, OSError)  # what the executor reports as an unavailable upstream
    assert await post(pool) == (200, b"{}")  # the next POST has a connection of its own


@on_both_loops
async def test_a_server_that_closes_without_answering_is_a_closed_connection(served: Served) -> None:
    state, pool = served.state, served.pool

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        writer.close()

    state.answer = answer
    with pytest.raises(HttpClosed):
        await post(pool)
    await poll_until(lambda: pool.connections == 0, "the closed connection to leave the pool")


@on_both_loops
async def test_malformed_answers_are_a_closed_connection(served: Served) -> None:
    state, pool = served.state, served.pool

    state.answer = writing(lambda n: b"this is not HTTP\r\n\r\n" if n == 1 else OK)
    with pytest.raises(HttpClosed, match="not valid HTTP"):
        await post(pool)
    assert await post(pool) == (200, b"{}")
    assert state.connections == 2


@on_both_loops
async def test_an_answer_left_unread_never_reaches_the_next_request(served: Served) -> None:
    state, pool = served.state, served.pool
    late = asyncio.Event()

    async def body_late(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n")  # the caller leaves before the body
        await late.wait()
        writer.write(b'"stale!!"')

    answer = first_then_ok(body_late)
    state.answer = answer
    async with pool.post(b"{}", {}) as response:
        assert response.status == 200  # left without reading the body
    late.set()
    with pytest.raises(TimeoutError):  # and one cancelled while waiting for its answer
        async with asyncio.timeout(0.05):
            state.answer = lambda writer, n: late.wait()
            await post(pool)
    state.answer = answer
    assert await post(pool) == (200, b"{}")
    assert state.connections == 3


@on_both_loops
async def test_the_server_closing_an_idle_connection_costs_the_next_post_nothing(served: Served) -> None:
    state, pool = served.state, served.pool

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(OK)
        await writer.drain()
        writer.close()  # as a server's keep-alive timeout does, after the answer

    state.answer = answer
    assert await post(pool) == (200, b"{}")
    await poll_until(lambda: pool.connections == 0, "the server's close to reach the pool")
    assert await post(pool) == (200, b"{}")


@on_both_loops
async def test_concurrent_posts_open_at_most_the_limit(served: Served) -> None:
    state, url, pool = served.state, served.url, served.pool
    release = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        await release.wait()
        writer.write(OK)

    state.answer = answer
    pool = HttpPool(url, limit=2)
    try:
        posts = [asyncio.create_task(post(pool)) for _ in range(6)]
        await poll_until(lambda: len(state.requests) == 2, "two requests to arrive")
        release.set()
        assert await asyncio.gather(*posts) == [(200, b"{}")] * 6
        assert state.most_open == 2
    finally:
        await pool.close()


@on_both_loops
async def test_posts_cancelled_while_waiting_for_a_connection_pass_their_turn_on(served: Served) -> None:
    """One cancelled in the queue leaves it; one cancelled just as it was handed the connection hands it on."""
    pool = HttpPool(served.url, limit=1)
    try:
        async with pool.post(b"{}", {}) as response:  # holds the only connection
            await response.read()
            handed, queued, left = (asyncio.create_task(post(pool)) for _ in range(3))
            await asyncio.sleep(0)  # all three wait behind this post, in that order
            left.cancel()
        handed.cancel()  # the block's end gave it the connection; cancelled before it could use it
        assert await queued == (200, b"{}")
        for task in (handed, left):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await asyncio.gather(post(pool), post(pool)) == [(200, b"{}")] * 2
        assert served.state.most_open == 1
    finally:
        await pool.close()


@on_both_loops
async def test_large_bodies_go_and_come_whole(served: Served) -> None:
    state, pool = served.state, served.pool
    big = b"x" * 5_000_000

    state.answer = writing(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)
    assert await post(pool, big) == (200, big)
    assert state.requests[0].body == big


@on_both_loops
async def test_a_body_over_the_readers_limit_stops_being_read_and_its_connection_goes(served: Served) -> None:
    state, pool = served.state, served.pool
    big = b"x" * 3_000_000

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" if n == 1 else OK)
        if n == 1:
            for start in range(0, len(big), 100_000):
                writer.write(b"%x\r\n" % 100_000 + big[start : start + 100_000] + b"\r\n")
            writer.write(b"0\r\n\r\n")

    state.answer = answer
    async with pool.post(b"{}", {}) as response:
        with pytest.raises(BodyTooLarge):
            await response.read(limit=250_000)
    assert await post(pool) == (200, b"{}")
    assert state.connections == 2  # the rest of the long answer was never read as the next one's


@on_both_loops
async def test_header_values_that_could_split_the_request_are_refused(served: Served) -> None:
    state, url, pool = served.state, served.url, served.pool
    for headers in ({"x-session": "a\r\nx-admin: 1"}, {"x-a\nb": "v"}, {"x-nul": "a\x00b"}, {"bad:name": "v"}):
        with pytest.raises(ValueError):
            await post(pool, headers=headers)
    with pytest.raises(ValueError):
        HttpPool(url, {"x-key": "secret\r\n"})
    with pytest.raises(ValueError, match="http"):
        HttpPool("ftp://example.com/mcp")
    assert state.requests == []


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@on_both_loops
async def test_https_upstreams_are_verified_against_the_trust_store(served: Served) -> None:
    with tempfile.TemporaryDirectory() as directory:
        cert, key = _certificate(Path(directory))
        server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_side.load_cert_chain(cert, key)
        state = Server(answer_ok)
        listening = await asyncio.start_server(state.serve, "127.0.0.1", 0, ssl=server_side)
        url = f"https://localhost:{listening.sockets[0].getsockname()[1]}/mcp"
        trusting = HttpPool(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        default = HttpPool(url)
        try:
            assert await post(trusting) == (200, b"{}")
            assert await post(trusting) == (200, b"{}")
            assert state.connections == 1
            with pytest.raises(ssl.SSLCertVerificationError):  # a certificate nobody vouches for: nothing sent
                await post(default)
            assert len(state.requests) == 2
        finally:
            await trusting.close()
            await default.close()
            listening.close()


@on_both_loops
async def test_a_connection_made_while_the_pool_closes_is_closed_too(served: Served) -> None:
    """A POST connecting when the pool closes (its upstream is stopping) gets `HttpClosed`, and the
    connection it was opening is closed rather than left to the garbage collector."""
    state, pool = served.state, served.pool
    posting = asyncio.ensure_future(post(pool))
    await asyncio.sleep(0)  # the POST is now waiting on its connection
    await pool.close()
    with pytest.raises(HttpClosed, match="pool is closed"):
        await posting
    assert pool.connections == 0 and state.requests == []


@on_both_loops
async def test_a_chunked_answers_trailer_fields_never_reach_the_next_answer(served: Served) -> None:
    """Header fields are read from each answer's own head: a trailer sent after a chunked body is
    read as no answer's header (the per-field callback handed it to the next answer on the connection)."""
    state, pool = served.state, served.pool

    state.answer = writing(
        lambda n: (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nx-smuggled: 1\r\n\r\n"
            if n == 1
            else OK
        )
    )
    for _ in range(2):
        async with pool.post(b"{}", {}) as response:
            assert "x-smuggled" not in response.headers
            assert await response.read() == b"{}"
    assert state.connections == 1


@on_both_loops
async def test_an_answer_head_read_in_pieces_and_after_an_interim_one_is_read_whole(served: Served) -> None:
    state, pool = served.state, served.pool

    async def answer(writer: asyncio.StreamWriter, n: int) -> None:
        reply = (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A:\t one \r\nx-a: two\r\ncontent-length: 2\r\n\r\n{}"
        )
        for at in range(0, len(reply), 7):
            writer.write(reply[at : at + 7])
            await writer.drain()
            await asyncio.sleep(0.001)  # apart, so they arrive in separate reads

    state.answer = answer
    async with pool.post(b"{}", {}) as response:
        assert response.status == 200 and response.headers == {"x-a": "one , two", "content-length": "2"}
        assert await response.read() == b"{}"


@on_both_loops
async def test_an_answer_head_past_the_limit_is_a_closed_connection(served: Served) -> None:
    state, pool = served.state, served.pool

    async def endless(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):
            writer.write(b"x-filler: " + b"f" * 1000 + b"\r\n")
            await writer.drain()

    state.answer = first_then_ok(endless)
    with pytest.raises(HttpClosed, match="head exceeds 65,536 bytes"):
        await post(pool)
    assert await post(pool) == (200, b"{}")

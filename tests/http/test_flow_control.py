"""Reading a request body resumes only what was paused (connections.py: ``resume_reading``).

aiohttp's stream reader asks the connection to resume reading after every read; the
server's handler does so only when something paused it. These check what a pause holds
back is still let through: pipelined requests past aiohttp's message queue (32), whose
bodies the handler reads, and a body far over the reader's high-water mark, sent at
once so that the reader pauses the socket while the handler catches up. With no resume
at all, both hang (checked when the override was written).
"""

from __future__ import annotations

import asyncio
import json
import re

from tests.conftest import Api


def _port(api: Api) -> int:
    port = api.client.server.port
    assert port is not None
    return port


async def _read_answers(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """``count`` HTTP/1.1 answers (status, body) read off one connection, in order."""
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"(?im)^content-length:\s*(\d+)\r$", head)
        assert match is not None, head
        answers.append((status, await asyncio.wait_for(reader.readexactly(int(match.group(1))), 30)))
    return answers


async def test_pipelined_requests_past_the_message_queue_all_read_their_bodies(api: Api) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    try:
        requests = []
        for i in range(100):  # more than aiohttp's queue of 32: the parser stops, then resumes
            body = json.dumps({"user_id": f"u{i}"}).encode()
            requests.append(
                f"POST /v1/invites/NOPE{i}/redeem HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {api.service_key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Request-Id: r{i}\r\n\r\n".encode() + body)
        writer.write(b"".join(requests))  # one write: every request in the server's first reads
        await writer.drain()
        answers = await _read_answers(reader, 100)
    finally:
        writer.close()
    # each body was read and decoded (a bad one is a 422): an unknown code, in order
    assert [status for status, _ in answers] == [404] * 100
    assert all(json.loads(body)["code"] == "NOT_FOUND" for _, body in answers)


async def test_a_body_over_the_high_water_mark_arrives_whole(api: Api) -> None:
    status, _ = await api.call("POST", "/v1/campaigns", json={"campaign_id": "big", "types": ["tm"]})
    assert status == 201
    codes = b"".join(b"C%07d\n" % i for i in range(60_000))  # 540 KB, four times the reader's 128 KB
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    try:
        writer.write(f"POST /v1/campaigns/big/codes?type=tm HTTP/1.1\r\nHost: t\r\n"
                     f"Authorization: Bearer {api.service_key}\r\nContent-Type: text/csv\r\n"
                     f"Content-Length: {len(codes)}\r\n\r\n".encode())
        writer.write(codes)  # at once: the server reads it faster than the handler takes it
        await writer.drain()
        [(status, body)] = await _read_answers(reader, 1)
    finally:
        writer.close()
    assert status == 200, body
    assert json.loads(body)["inserted"] == 60_000
    status, campaign = await api.call("GET", "/v1/campaigns/big")
    assert status == 200, campaign

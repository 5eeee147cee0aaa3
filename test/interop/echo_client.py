#!/usr/bin/python3
"""Talks to the server's /echo endpoint with Python's `websockets` library.

Run by test/interop.test.ts and test/runtimes.test.ts, with Debian's Python
(/usr/bin/python3, package python3-websockets):

    /usr/bin/python3 test/interop/echo_client.py '<plan as JSON>'

The plan:
    url          ws://127.0.0.1:PORT/echo
    compression  "deflate" (the library's default: it offers permessage-deflate)
                 or null (no extension offered)
    steps        a list, run in order, each one of
                   {"op": "message", "label", "kind": "text"|"binary", "size",
                    "content": "mixed"|"random"|"repeat", "fragments": N}
                       sends one message (in N frames when N > 1, by handing
                       send() an iterable) and waits for its echo;
                   {"op": "ping", "label", "size"}
                       sends a ping with `size` bytes and waits for its pong;
                   {"op": "too_big", "label", "kind", "size", "content"}
                       sends a message the server must refuse, and expects
                       the connection to be closed by the server.
    close        {"code", "reason"} for the final closing handshake

It prints one JSON object: the negotiated extension, what came back for each
step (with SHA-256 of the bytes sent and received, and whether the echo came
compressed: RSV1 on its first frame, RFC 7692 §6), and the close codes.
Any failure is printed on stderr with exit status 1.
"""

import asyncio
import hashlib
import json
import os
import sys

try:
    import websockets
    import websockets.exceptions
except ImportError:  # the test turns this into a loud failure with the install hint
    sys.stderr.write(
        "python websockets is not installed: apt-get install -y python3-websockets "
        "(and run this with /usr/bin/python3)\n"
    )
    sys.exit(3)

# RSV1 of the first frame of every message received, in order, as read from
# the wire: the library's permessage-deflate decoder sees each data frame
# before it inflates it (and clears RSV1), so it is watched there.
first_frames_rsv1 = []
try:
    from websockets import frames as _frames
    from websockets.extensions import permessage_deflate as _permessage_deflate

    _decode = _permessage_deflate.PerMessageDeflate.decode

    def _watched_decode(self, frame, *args, **kwargs):
        if frame.opcode in (_frames.OP_TEXT, _frames.OP_BINARY):
            first_frames_rsv1.append(bool(frame.rsv1))
        return _decode(self, frame, *args, **kwargs)

    _permessage_deflate.PerMessageDeflate.decode = _watched_decode
except (ImportError, AttributeError) as error:  # a websockets without these: say so, do not guess
    sys.stderr.write("cannot watch RSV1 in this websockets: %s\n" % error)
    sys.exit(3)

PATTERN = "aé€😀"  # 1 + 2 + 3 + 4 = 10 bytes of UTF-8
REPEAT = "the quick brown fox jumps over the lazy dog\n"


def make_text(size, content):
    unit = REPEAT if content == "repeat" else PATTERN
    unit_bytes = len(unit.encode("utf-8"))
    whole = size // unit_bytes
    return unit * whole + "x" * (size - whole * unit_bytes)


def make_binary(size, content):
    if content == "random":
        return os.urandom(size)
    return make_text(size, content).encode("utf-8")


def split(value, parts):
    """Splits a str (on characters) or bytes into `parts` pieces, some maybe empty."""
    length = len(value)
    bounds = [length * index // parts for index in range(parts + 1)]
    return [value[bounds[index]:bounds[index + 1]] for index in range(parts)]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


async def run(plan):
    compression = plan.get("compression", "deflate")
    timeout = plan.get("stepTimeout", 20)
    async with websockets.connect(
        plan["url"],
        compression=compression,
        max_size=None,  # the client must not be the one that limits sizes here
        ping_interval=None,  # no pings of its own: the test sends them
        open_timeout=timeout,
        close_timeout=timeout,
    ) as ws:
        report = {
            "library": "websockets " + websockets.__version__,
            "extensions": ws.response_headers.get("Sec-WebSocket-Extensions"),
            "steps": [],
        }
        for step in plan["steps"]:
            op = step["op"]
            if op == "message":
                if step["kind"] == "text":
                    value = make_text(step["size"], step["content"])
                    sent = value.encode("utf-8")
                else:
                    value = make_binary(step["size"], step["content"])
                    sent = value
                fragments = step.get("fragments", 1)
                seen = len(first_frames_rsv1)
                if fragments > 1:
                    await asyncio.wait_for(ws.send(split(value, fragments)), timeout)
                else:
                    await asyncio.wait_for(ws.send(value), timeout)
                echo = await asyncio.wait_for(ws.recv(), timeout)
                received = echo.encode("utf-8") if isinstance(echo, str) else bytes(echo)
                report["steps"].append({
                    "label": step["label"],
                    "sentKind": step["kind"],
                    "sentBytes": len(sent),
                    "sentSha256": sha256(sent),
                    "fragments": fragments,
                    "receivedKind": "text" if isinstance(echo, str) else "binary",
                    "receivedBytes": len(received),
                    "receivedSha256": sha256(received),
                    # None when no extension was agreed: the decoder never ran.
                    "receivedCompressed": any(first_frames_rsv1[seen:]) if ws.extensions else None,
                })
            elif op == "ping":
                payload = os.urandom(step["size"])
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, timeout)
                report["steps"].append({"label": step["label"], "pong": True, "size": len(payload)})
            elif op == "too_big":
                if step["kind"] == "text":
                    value = make_text(step["size"], step["content"])
                else:
                    value = make_binary(step["size"], step["content"])
                await asyncio.wait_for(ws.send(value), timeout)
                outcome = {"label": step["label"], "closedByServer": False}
                try:
                    await asyncio.wait_for(ws.recv(), timeout)
                    outcome["unexpectedEcho"] = True
                except websockets.exceptions.ConnectionClosed:
                    outcome["closedByServer"] = True
                await asyncio.wait_for(ws.wait_closed(), timeout)
                outcome["code"] = ws.close_code
                outcome["reason"] = ws.close_reason
                report["steps"].append(outcome)
                report["close"] = {"code": ws.close_code, "reason": ws.close_reason}
                return report
            else:
                raise ValueError("unknown step " + repr(op))

        close = plan.get("close", {"code": 1000, "reason": ""})
        await asyncio.wait_for(ws.close(close["code"], close["reason"]), timeout)
        await asyncio.wait_for(ws.wait_closed(), timeout)
        # close_code/close_reason are what the server's close frame carried.
        report["close"] = {"code": ws.close_code, "reason": ws.close_reason}
        return report


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: echo_client.py '<plan as JSON>'\n")
        sys.exit(2)
    plan = json.loads(sys.argv[1])
    try:
        report = asyncio.run(asyncio.wait_for(run(plan), plan.get("timeout", 60)))
    except Exception as error:  # noqa: BLE001 - reported to the test as it is
        sys.stderr.write("echo_client.py: %s: %s\n" % (type(error).__name__, error))
        sys.exit(1)
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()

"""Two chat members on Python's websockets (Debian's), both offering
permessage-deflate, as real clients nobody here wrote: the first says a long
message (large enough for the server to compress its broadcast), the second
must receive it intact. Prints one JSON report on stdout.

usage: chat_clients.py URL TEXT_LENGTH
"""
import asyncio
import json
import sys

try:
    import websockets
except ImportError:
    print("chat_clients.py: python3-websockets is missing: apt-get install -y python3-websockets", file=sys.stderr)
    sys.exit(2)


async def next_of_type(ws, kind):
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message


async def main(url, length):
    text = ("中文 and English, " * (length // 16 + 1))[:length]
    async with websockets.connect(url + "?name=py-a", max_size=None) as a, websockets.connect(url + "?name=py-b", max_size=None) as b:
        welcome_a = await next_of_type(a, "welcome")
        welcome_b = await next_of_type(b, "welcome")
        await a.send(json.dumps({"type": "say", "id": "py-1", "text": text}))
        echoed = await next_of_type(a, "message")
        received = await next_of_type(b, "message")
        print(json.dumps({
            "extensions": [a.response_headers.get("Sec-WebSocket-Extensions"), b.response_headers.get("Sec-WebSocket-Extensions")],
            "names": [welcome_a["name"], welcome_b["name"]],
            "sentLength": len(text),
            "echoIntact": echoed["text"] == text and echoed["id"] == "py-1",
            "receivedIntact": received["text"] == text and received["from"] == "py-a",
        }))


asyncio.run(main(sys.argv[1], int(sys.argv[2])))

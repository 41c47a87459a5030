"""The baseline of the rendezvous server benchmarks: a bare ASGI app, and ``python bare_app.py PORT`` serves it.

It reads the request body the way the rendezvous app does and answers a fixed JSON body of the same shape and size
as a v3 answer, so the difference to it is what the rendezvous itself costs (routing, strict JSON, the store, the
response values and their headers, the front's metrics). Served on exactly the same uvicorn runner and limits as
``qrlogin serve`` (:func:`qrlogin.adapters.uvicorn_runner.serve`).
"""

from __future__ import annotations

import sys
from typing import Any

BODY = b'{"id":"AAAAAAAAAAAAAAAAAAAAAA","sequence_token":"0.AAAAAAAAAAAAAAAAAAAAAA","expires_in_ms":120000}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    from qrlogin.adapters.uvicorn_runner import Limits, bind, serve

    serve(app, bind("127.0.0.1", int(sys.argv[1])), limits=Limits(), log_level="warning")

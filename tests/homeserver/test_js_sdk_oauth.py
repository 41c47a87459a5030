"""matrix-js-sdk 43's own OAuth 2.0 helpers against the served homeserver model, nothing mocked on js-sdk's side.

``interop/node/js_sdk_oauth_client.mjs`` discovers the server (``.well-known``, ``/versions``), validates its auth
metadata with ``MatrixClient.getAuthMetadata``, registers a client, runs the authorization code grant with PKCE
(the user's sign-in and consent played by fetch calls that behave like a browser), exchanges the code, refreshes,
revokes, and runs the device authorization grant with the user approving on the verification page. This test checks
what it reports.
"""

from __future__ import annotations

import json
import subprocess
from urllib.parse import urlsplit

from tests.device.js_sdk_peer import NODE_PROJECT, require_js_sdk
from tests.homeserver.served import serve_homeserver

SCRIPT = NODE_PROJECT / "js_sdk_oauth_client.mjs"
SERVER_NAME = "qrlogin.test"
BASE_URL = "https://matrix.qrlogin.test"
PASSWORD = "correct horse battery staple"
TIMEOUT_S = 60


def test_js_sdk_oauth_helpers_against_the_served_model() -> None:
    require_js_sdk()
    with serve_homeserver(
        users={"alice": PASSWORD}, base_url=BASE_URL, server_name=SERVER_NAME, poll_interval_s=1
    ) as served:
        routes = {SERVER_NAME: served.loopback, urlsplit(BASE_URL).netloc: served.loopback}
        config = {
            "server_name": SERVER_NAME,
            "base_url": BASE_URL,
            "routes": routes,
            "username": "alice",
            "password": PASSWORD,
            "device_id": "JSSDKWEB01",
            "grant_device_id": "JSSDKTV001",
        }
        completed = subprocess.run(
            ["node", str(SCRIPT), json.dumps(config)],
            cwd=NODE_PROJECT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    assert completed.stdout, completed.stderr[-3000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    assert "failed" not in result, (result, completed.stderr[-3000:])
    user = f"@alice:{SERVER_NAME}"
    assert result["discovery_state"] == "SUCCESS", result
    assert result["discovered_base_url"] == BASE_URL
    assert result["issuer"] == BASE_URL + "/"
    assert result["consent_page_names_device"] and result["state_matches"]
    assert result["callback"] == "https://app.client.qrlogin.test/callback"
    assert (result["token_type"], result["expires_in"]) == ("Bearer", 300)
    assert result["whoami"] == {"user_id": user, "device_id": "JSSDKWEB01"}
    assert result["refreshed_whoami"] == {"user_id": user, "device_id": "JSSDKWEB01"}
    assert result["old_token_errcode"] == "M_UNKNOWN_TOKEN"
    assert result["reused_refresh"] is not None  # js-sdk refuses the answer to a spent refresh token
    assert result["revoked_errcode"] == "M_UNKNOWN_TOKEN"
    assert result["user_code_shape"] and result["approval_page_shows"] and result["approval_status"] == 200
    assert result["device_grant_whoami"] == {"user_id": user, "device_id": "JSSDKTV001"}

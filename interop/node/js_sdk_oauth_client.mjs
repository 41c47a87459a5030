// matrix-js-sdk 43.0.0's own OAuth 2.0 helpers against a homeserver, unmocked: server discovery
// (AutoDiscovery.findClientConfig, which also checks /versions), the auth metadata validation
// (MatrixClient.getAuthMetadata), dynamic client registration (OAuth2.registerClient), the authorization code grant
// with PKCE (generateAuthorizationCodeGrantUrl, completeAuthorizationCodeGrant), the refresh token grant
// (performRefreshTokenGrant), revocation (revokeToken) and the device authorization grant
// (startDeviceAuthorizationGrant, waitForDeviceAuthorizationGrant), checking each token with whoami.
//
// Start: node js_sdk_oauth_client.mjs '<json config>'
//   {"server_name": str, "base_url": "https://...", "routes": {host: "http://127.0.0.1:<port>", ...},
//    "username": str, "password": str, "device_id": str, "grant_device_id": str}
// Prints one JSON object on stdout: what each step observed (see the end of this file); exits 1 on a failure,
// printing {"failed": message}.
//
// The user's part (signing in on the server's page and allowing the request, approving the device code on the
// verification page) is played by plain fetch calls that behave like a browser: they keep the session cookie, send
// the Origin a same-origin form sends, and read the hidden fields of each form. js-sdk never sees any of it.
//
// Network: as in js_sdk_login_peer.mjs, the homeserver is reached at a public https name; globalThis.fetch is
// wrapped to send exactly the hosts in "routes" to the loopback server and to refuse every other host.

for (const name of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[name] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

const config = JSON.parse(process.argv[2]);
const realFetch = globalThis.fetch;
const routes = new Map(Object.entries(config.routes));
globalThis.fetch = (resource, options) => {
    const url = new URL(typeof resource === "string" || resource instanceof URL ? resource : resource.url);
    if (url.protocol !== "https:" || !routes.has(url.host)) {
        return Promise.reject(new TypeError(`js_sdk_oauth_client: refusing to fetch ${url}`));
    }
    return realFetch(new URL(url.pathname + url.search, routes.get(url.host)), options);
};

const sdk = await import("matrix-js-sdk");
const { AutoDiscovery, OAuth2, createClient } = sdk;

const REDIRECT_URI = "https://app.client.qrlogin.test/callback";

// -- the user's browser ----------------------------------------------------------------------------------------

class Browser {
    constructor(baseUrl) {
        this.base = new URL(baseUrl);
        this.cookie = null;
    }

    async request(target, form) {
        const url = new URL(target, this.base);
        const headers = {};
        if (this.cookie) headers.cookie = this.cookie;
        const init = { method: form ? "POST" : "GET", headers, redirect: "manual" };
        if (form) {
            headers["content-type"] = "application/x-www-form-urlencoded";
            headers.origin = this.base.origin;
            init.body = new URLSearchParams(form).toString();
        }
        const response = await fetch(url, init);
        const setCookie = response.headers.get("set-cookie");
        if (setCookie) this.cookie = setCookie.split(";")[0];
        return { status: response.status, location: response.headers.get("location"), html: await response.text() };
    }

    static hidden(html) {
        const fields = {};
        for (const match of html.matchAll(/<input type=hidden name="([^"]*)" value="([^"]*)">/g)) {
            fields[unescape(match[1])] = unescape(match[2]);
        }
        return fields;
    }

    // Follow same-server redirects until a page answers or the server sends us away; sign in when asked.
    async visit(target) {
        let response = await this.request(target);
        for (let hops = 0; response.status === 303 && hops < 5; hops++) {
            const next = new URL(response.location, this.base);
            if (next.origin !== this.base.origin) return response;
            if (next.pathname === "/login") {
                const page = await this.request(next.pathname + next.search);
                const fields = { ...Browser.hidden(page.html), username: config.username, password: config.password };
                response = await this.request("/login", fields);
                continue;
            }
            response = await this.request(next.pathname + next.search);
        }
        return response;
    }
}

function unescape(text) {
    return text
        .replaceAll("&quot;", '"')
        .replaceAll("&#x27;", "'")
        .replaceAll("&lt;", "<")
        .replaceAll("&gt;", ">")
        .replaceAll("&amp;", "&");
}

async function errcodeOf(promise) {
    try {
        await promise;
        return null;
    } catch (error) {
        return error.errcode ?? error.message;
    }
}

// -- the client ------------------------------------------------------------------------------------------------

const result = {};
try {
    const discovery = await AutoDiscovery.findClientConfig(config.server_name);
    result.discovery_state = discovery["m.homeserver"].state;
    result.discovery_error = discovery["m.homeserver"].error ?? null;
    const baseUrl = discovery["m.homeserver"].base_url;
    result.discovered_base_url = baseUrl;

    const anonymous = createClient({ baseUrl });
    const metadata = await anonymous.getAuthMetadata();
    result.issuer = metadata.issuer;

    const clientId = await OAuth2.registerClient(metadata, {
        client_name: "js-sdk OAuth test",
        "client_name#fr": "Test OAuth de js-sdk",
        client_uri: "https://client.qrlogin.test/",
        logo_uri: "https://client.qrlogin.test/logo.png",
        redirect_uris: [REDIRECT_URI],
        application_type: "web",
    });
    result.client_id = clientId;

    // Authorization code grant with PKCE, in js-sdk's default response mode (fragment).
    const oauth = new OAuth2(metadata, { clientId, deviceId: config.device_id });
    const state = "state-" + Date.now();
    const authorizationUrl = await oauth.generateAuthorizationCodeGrantUrl(state, REDIRECT_URI);
    const browser = new Browser(baseUrl);
    const consent = await browser.visit(authorizationUrl);
    if (consent.status !== 200) throw new Error(`consent page answered ${consent.status}`);
    result.consent_page_names_device = consent.html.includes(config.device_id);
    const allowed = await browser.request("/oauth2/authorize", { ...Browser.hidden(consent.html), action: "allow" });
    const callback = new URL(allowed.location);
    result.callback = callback.origin + callback.pathname;
    const answer = new URLSearchParams(callback.hash.slice(1));
    result.state_matches = answer.get("state") === state;
    const tokens = await oauth.completeAuthorizationCodeGrant(answer.get("code"), REDIRECT_URI);
    result.token_type = tokens.token_type;
    result.expires_in = tokens.expires_in;
    result.whoami = await createClient({ baseUrl, accessToken: tokens.access_token }).whoami();

    // Refresh: the new access token works, the old one is gone.
    const refreshed = await oauth.performRefreshTokenGrant(tokens.refresh_token);
    result.refreshed_whoami = await createClient({ baseUrl, accessToken: refreshed.access_token }).whoami();
    result.old_token_errcode = await errcodeOf(createClient({ baseUrl, accessToken: tokens.access_token }).whoami());
    result.reused_refresh = await errcodeOf(oauth.performRefreshTokenGrant(tokens.refresh_token));

    // Revocation logs the device out.
    await oauth.revokeToken(refreshed.refresh_token, "refresh_token");
    result.revoked_errcode = await errcodeOf(createClient({ baseUrl, accessToken: refreshed.access_token }).whoami());

    // Device authorization grant: js-sdk starts and polls, the user approves on the verification page.
    const tv = new OAuth2(metadata, { clientId, deviceId: config.grant_device_id });
    const session = await tv.startDeviceAuthorizationGrant();
    result.user_code_shape = /^[A-Z]{4}-[A-Z]{4}$/.test(session.user_code);
    const waiting = tv.waitForDeviceAuthorizationGrant(session);
    const approvalPage = await browser.visit(session.verification_uri_complete);
    result.approval_page_shows =
        approvalPage.html.includes(session.user_code) &&
        approvalPage.html.includes("js-sdk OAuth test") &&
        approvalPage.html.includes(config.grant_device_id);
    const approved = await browser.request("/link", { ...Browser.hidden(approvalPage.html), action: "approve" });
    result.approval_status = approved.status;
    const granted = await waiting;
    result.device_grant_whoami = await createClient({ baseUrl, accessToken: granted.access_token }).whoami();
    process.stdout.write(JSON.stringify(result) + "\n");
} catch (error) {
    process.stdout.write(JSON.stringify({ ...result, failed: String(error?.stack ?? error) }) + "\n");
    process.exit(1);
}

// The deployed v1 sign-in with QR code (MSC4108 "2024") as a peer for qrlogin's interop tests: matrix-js-sdk
// 43.0.0's MSC4108SignInWithQR + MSC4108SecureChannel + MSC4108RendezvousSession, unchanged, in one of its four
// roles. Element Web runs exactly these classes, with a real MatrixClient (createClient) around them; the only
// stand-ins are the client's getCrypto() (the secrets bundle, below) and the name-to-address step of the network
// (see "Network").
//
// Start: node js_sdk_login_peer.mjs '<json config>'
//   {"kind": "existing" | "new", "scan": bool, "server_name": str, "base_url": "https://...",
//    "routes": {host: "http://127.0.0.1:<port>", ...}, "rendezvous_base": "https://..." (optional),
//    existing: "user_id": str, "device_id": str, "access_token": str,
//              "secrets": {...the exportSecretsBundle() result...}
//    new:      "device_id": str, "client_metadata": {...RFC 7591 registration body...}}
//
// Line protocol (one JSON object per line). Events on stdout:
//   {"event": "qr", "qr": b64}                      we generated the QR (G)
//   {"event": "check_code", "code": "NN"}          the channel is up; what flow.checkCode shows
//   {"event": "protocols", "homeserver": str}       (new G) what m.login.protocols said
//   {"event": "discovered", "base_url": str, "issuer": str}   (new) what js-sdk's discovery found
//   {"event": "verification_uri", "uri": str}      (existing) the user should open this and consent
//   {"event": "user_code", "user_code": str, "verification_uri": str}    (new)
//   {"event": "logged_in", "access_token": str}     (new) the token endpoint answered
//   {"event": "done", "secrets": {...}}            the flow resolved; the secrets sent (existing) or received (new)
//   {"event": "failed", "error": str, "code": str | null}   the flow rejected (RendezvousError code when it is one)
//   {"event": "on_failure", "reason": str}          js-sdk's onFailure callback fired
//   {"event": "cancelled"}                          after a cancel command: js-sdk's cancel() returned; the peer exits
// Commands on stdin:
//   {"op": "scan", "qr": b64}                       (S) the QR to scan
//   {"op": "check_code", "code": "NN"}              (G) what the user typed; a mismatch cancels the flow the way
//                                                   Element Web does (insecure_channel_detected)
//   {"op": "consented"}                             (existing) the user approved the grant in the browser
//   {"op": "cancel"}                                the user pressed cancel: flow.cancel(user_cancelled), then exit
//
// Server discovery and the auth metadata are js-sdk's own, unmocked: the new device finds its homeserver with
// AutoDiscovery.findClientConfig(server name) (.well-known, then /versions, validating both) and reads the auth
// metadata with MatrixClient.getAuthMetadata() (js-sdk's metadata validation); every client call the rendezvous code
// makes (getAuthMetadata, doesServerSupportUnstableFeature via /versions, http.getUrl, getDevice, getDomain) is the
// real MatrixClient's. Dynamic client registration is a plain POST of "client_metadata" to the registration
// endpoint js-sdk validated, as Element does around the flow.
//
// Network: the homeserver is reached at a public https name (base_url, and the server_name for .well-known), as a
// deployed client would. globalThis.fetch is wrapped to send exactly those hosts to the loopback test server and to
// refuse every other host: "routes" maps each host to a loopback origin, an /etc/hosts + TLS terminator in one line.
// That is address routing, not mocking: the request and the answer pass through unchanged, and the server's real
// answers are what js-sdk validates. The rendezvous is created at "rendezvous_base" when given (another server, e.g.
// `qrlogin serve`; the client's http.getUrl then points there, the one place the client is redirected), else on the
// homeserver.
//
// js-sdk logs through loglevel to the console: console output is moved to stderr before js-sdk loads, so stdout
// carries only this protocol.
import readline from "node:readline";

for (const name of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[name] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

const config = JSON.parse(process.argv[2]);
const realFetch = globalThis.fetch;
const routes = new Map(Object.entries(config.routes));
globalThis.fetch = (resource, options) => {
    const url = new URL(typeof resource === "string" || resource instanceof URL ? resource : resource.url);
    if (url.protocol !== "https:" || !routes.has(url.host)) {
        return Promise.reject(new TypeError(`js_sdk_login_peer: refusing to fetch ${url}`));
    }
    return realFetch(new URL(url.pathname + url.search, routes.get(url.host)), options);
};

const wasm = await import("@matrix-org/matrix-sdk-crypto-wasm");
await wasm.initAsync();
const rendezvous = await import("matrix-js-sdk/lib/rendezvous/index.js");
const { ClientPrefix } = await import("matrix-js-sdk/lib/http-api/index.js");
const { AutoDiscovery, createClient } = await import("matrix-js-sdk");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
logger.setLevel(process.env.QRLOGIN_JS_LOG ?? "info");
const {
    ClientRendezvousFailureReason,
    MSC4108FailureReason,
    MSC4108RendezvousSession,
    MSC4108SecureChannel,
    MSC4108SignInWithQR,
    RendezvousError,
    linkNewDeviceByGeneratingQR,
    signInByGeneratingQR,
} = rendezvous;

function emit(event) {
    process.stdout.write(JSON.stringify(event) + "\n");
}

// ---- commands from the test, in arrival order
const waiting = [];
const queued = [];
let flowForCancel = null;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const command = JSON.parse(line);
    if (command.op === "cancel") {
        // What Element Web's cancel button does; the flow's pending step never resolves after it, so end here.
        void (async () => {
            if (flowForCancel) await flowForCancel.cancel(MSC4108FailureReason.UserCancelled);
            emit({ event: "cancelled" });
            process.exit(0);
        })();
        return;
    }
    const i = waiting.findIndex((w) => w.op === command.op);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(command);
    else queued.push(command);
});
function command(op) {
    const i = queued.findIndex((c) => c.op === op);
    if (i >= 0) return Promise.resolve(queued.splice(i, 1)[0]);
    return new Promise((resolve) => waiting.push({ op, resolve }));
}

// ---- the MatrixClient: js-sdk's own, with only getCrypto() standing in (a real one needs the rust crypto store)
async function getJson(url, init) {
    const response = await fetch(url, init);
    return { response, body: await response.json() };
}

const RENDEZVOUS_PATH = "/org.matrix.msc4108/rendezvous"; // what MSC4108RendezvousSession asks http.getUrl for

function matrixClient(baseUrl, credentials = {}) {
    const client = createClient({ baseUrl, ...credentials });
    client.getCrypto = () => ({ exportSecretsBundle: async () => config.secrets });
    if (config.rendezvous_base) {
        const getUrl = client.http.getUrl.bind(client.http);
        client.http.getUrl = (path, query, prefix, base) =>
            getUrl(path, query, prefix, path === RENDEZVOUS_PATH ? config.rendezvous_base : base);
    }
    return client;
}

function existingClient() {
    return matrixClient(config.base_url, {
        userId: config.user_id,
        deviceId: config.device_id,
        accessToken: config.access_token,
    });
}

const onFailure = (reason) => emit({ event: "on_failure", reason });

async function scannedFlow(client) {
    const { qr } = await command("scan");
    const data = wasm.QrCodeData.fromBytes(Buffer.from(qr, "base64"));
    const session = new MSC4108RendezvousSession({ url: data.rendezvousUrl, onFailure });
    const channel = new MSC4108SecureChannel(session, data.publicKey, onFailure);
    return { flow: new MSC4108SignInWithQR(channel, true, client, onFailure), serverName: data.serverName };
}

async function confirmCheckCode(flow) {
    const { code } = await command("check_code");
    if (code !== flow.checkCode) {
        await flow.cancel(ClientRendezvousFailureReason.InsecureChannelDetected);
        throw new RendezvousError("check code mismatch", ClientRendezvousFailureReason.InsecureChannelDetected);
    }
}

async function existingDevice() {
    const client = existingClient();
    let flow;
    if (config.scan) {
        ({ flow } = await scannedFlow(client));
    } else {
        flow = await linkNewDeviceByGeneratingQR(client, onFailure, new AbortController().signal);
        emit({ event: "qr", qr: Buffer.from(flow.code).toString("base64") });
    }
    flowForCancel = flow;
    await flow.negotiateProtocols();
    emit({ event: "check_code", code: flow.checkCode });
    if (!config.scan) await confirmCheckCode(flow);
    const { verificationUri } = await flow.deviceAuthorizationGrant();
    emit({ event: "verification_uri", uri: verificationUri });
    await command("consented");
    const { secrets } = await flow.shareSecrets();
    return secrets;
}

// What the new device's application does once it knows the server name: js-sdk's discovery and metadata validation.
async function discover(serverName) {
    const discovery = await AutoDiscovery.findClientConfig(serverName);
    const homeserver = discovery["m.homeserver"];
    if (homeserver.state !== AutoDiscovery.SUCCESS) {
        throw new Error(`discovery of ${serverName} failed: ${homeserver.state} ${homeserver.error ?? ""}`);
    }
    const metadata = await createClient({ baseUrl: homeserver.base_url }).getAuthMetadata();
    emit({ event: "discovered", base_url: homeserver.base_url, issuer: metadata.issuer });
    return metadata;
}

async function newDevice() {
    let flow;
    let serverName;
    if (config.scan) {
        ({ flow, serverName } = await scannedFlow(undefined));
        flowForCancel = flow;
        await flow.negotiateProtocols();
        emit({ event: "check_code", code: flow.checkCode });
    } else {
        const tempClient = matrixClient(config.base_url);  // no account yet: only the rendezvous endpoint
        flow = await signInByGeneratingQR(tempClient, onFailure, new AbortController().signal);
        flowForCancel = flow;
        emit({ event: "qr", qr: Buffer.from(flow.code).toString("base64") });
        ({ serverName } = await flow.negotiateProtocols());
        emit({ event: "protocols", homeserver: serverName });
        emit({ event: "check_code", code: flow.checkCode });
        await confirmCheckCode(flow);
    }
    const metadata = await discover(serverName);
    const { response, body: registration } = await getJson(metadata.registration_endpoint, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(config.client_metadata),
    });
    if (!response.ok) throw new Error(`client registration failed: ${JSON.stringify(registration)}`);
    const clientId = registration.client_id;
    const { verificationUri, userCode } = await flow.deviceAuthorizationGrant({
        metadata,
        clientId,
        deviceId: config.device_id,
    });
    emit({ event: "user_code", user_code: userCode, verification_uri: verificationUri });
    const tokens = await flow.completeLoginOnNewDevice({ clientId });
    emit({ event: "logged_in", access_token: tokens.access_token });
    const { secrets } = await flow.shareSecrets();
    return secrets;
}

try {
    const secrets = config.kind === "existing" ? await existingDevice() : await newDevice();
    emit({ event: "done", secrets });
    process.exit(0);
} catch (error) {
    emit({ event: "failed", error: String(error?.message ?? error), code: error?.code ?? null });
    process.exit(0);
}

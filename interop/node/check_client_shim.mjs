// A shim for `qrlogin check-client`: matrix-js-sdk 43.0.0's v1 sign-in with QR code (MSC4108SignInWithQR,
// MSC4108SecureChannel, MSC4108RendezvousSession, unchanged: what Element Web runs) speaking the JSON-lines events
// and acts of `qrlogin login/link --events json`. It translates and adds nothing: no timeout of its own, no retry,
// no extra message, so what the suite grades is js-sdk's behaviour.
//
// Template (docs/conformance.md):
//   node interop/node/check_client_shim.mjs --role {role} --side {side} --generation {generation}
//     --homeserver {homeserver} --server-name {server_name} --qr {qr_hex} --access-token {access_token}
//     --device-id {device_id} --secrets {secrets_file}
//
// Events on stdout: qr {hex}, check_code {code} (js-sdk scanned: it shows the code), prompt {ask: "check_code"}
// (js-sdk generated: the user types the code the other device shows), prompt {ask: "open_uri", uri} (existing
// device), user_code {code, uri} (new device), note {on_failure} (js-sdk's onFailure callback), done {outcome}.
// Acts on stdin: check_code {code}, opened, consent {approve}, cancel.
//
// Network: the homeserver is the loopback http URL the suite gives; a new device that scanned resolves the QR's
// server name at https://<server name>/.well-known/matrix/client, which is sent to the same loopback server. Every
// other host is refused. js-sdk logs to the console: console output goes to stderr, stdout carries only events.
import fs from "node:fs";
import readline from "node:readline";

for (const name of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[name] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

function emit(event) {
    process.stdout.write(JSON.stringify(event) + "\n");
}

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
if (args.generation && args.generation !== "v1") {
    emit({ event: "done", outcome: "unsupported_generation", detail: "matrix-js-sdk 43 speaks MSC4108 v1 only" });
    process.exit(0);
}
const homeserver = args.homeserver.replace(/\/$/, "");
const serverName = args["server-name"];

const realFetch = globalThis.fetch;
globalThis.fetch = (resource, options) => {
    const url = new URL(typeof resource === "string" || resource instanceof URL ? resource : resource.url);
    if (url.origin === homeserver) return realFetch(url, options);
    if (url.protocol === "https:" && url.host === serverName) {
        return realFetch(new URL(url.pathname + url.search, homeserver), options);
    }
    return Promise.reject(new TypeError(`check_client_shim: refusing to fetch ${url}`));
};

const wasm = await import("@matrix-org/matrix-sdk-crypto-wasm");
await wasm.initAsync();
const rendezvous = await import("matrix-js-sdk/lib/rendezvous/index.js");
const { MatrixError, ClientPrefix } = await import("matrix-js-sdk/lib/http-api/index.js");
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

// ---- acts from the suite, in arrival order
const waiting = [];
const queued = [];
let flowForCancel = null;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
    let act;
    try {
        act = JSON.parse(line);
    } catch {
        return;
    }
    if (act.act === "cancel") {
        // What Element Web's cancel button does. The flow's pending step never settles after it: end here.
        void (async () => {
            try {
                if (flowForCancel) await flowForCancel.cancel(MSC4108FailureReason.UserCancelled);
            } finally {
                emit({ event: "done", outcome: "user_cancelled" });
                process.exit(0);
            }
        })();
        return;
    }
    const name = act.act === "consent" ? "opened" : act.act;
    const i = waiting.findIndex((w) => w.name === name);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(act);
    else queued.push({ name, act });
});
function next(name) {
    const i = queued.findIndex((q) => q.name === name);
    if (i >= 0) return Promise.resolve(queued.splice(i, 1)[0].act);
    return new Promise((resolve) => waiting.push({ name, resolve }));
}

// ---- the MatrixClient: exactly what the rendezvous code calls
async function getJson(url, init) {
    const response = await fetch(url, init);
    return { response, body: await response.json() };
}

function client() {
    return {
        getDomain: () => serverName,
        doesServerSupportUnstableFeature: async (feature) => feature === "org.matrix.msc4108",
        http: { getUrl: (path, _query, prefix) => new URL(homeserver + (prefix ?? ClientPrefix.V3) + path) },
        getAuthMetadata: async () => (await getJson(homeserver + "/_matrix/client/v1/auth_metadata")).body,
        getDevice: async (deviceId) => {
            const url = `${homeserver}/_matrix/client/v3/devices/${encodeURIComponent(deviceId)}`;
            const { response, body } = await getJson(url, { headers: { authorization: `Bearer ${args["access-token"]}` } });
            if (!response.ok) throw new MatrixError(body, response.status, url);
            return body;
        },
        getCrypto: () => ({ exportSecretsBundle: async () => JSON.parse(fs.readFileSync(args.secrets, "utf-8")) }),
    };
}

const onFailure = (reason) => emit({ event: "note", on_failure: reason });

function scannedFlow(matrixClient) {
    const data = wasm.QrCodeData.fromBytes(Buffer.from(args.qr, "hex"));
    const session = new MSC4108RendezvousSession({ url: data.rendezvousUrl, onFailure });
    const channel = new MSC4108SecureChannel(session, data.publicKey, onFailure);
    return { flow: new MSC4108SignInWithQR(channel, true, matrixClient, onFailure), qrServerName: data.serverName };
}

async function typeCheckCode(flow) {
    emit({ event: "prompt", ask: "check_code" });
    const { code } = await next("check_code");
    if (code !== flow.checkCode) {
        // What Element Web does on a mismatch.
        await flow.cancel(ClientRendezvousFailureReason.InsecureChannelDetected);
        throw new RendezvousError("check code mismatch", ClientRendezvousFailureReason.InsecureChannelDetected);
    }
}

async function existingDevice() {
    let flow;
    if (args.side === "scans") {
        ({ flow } = scannedFlow(client()));
    } else {
        flow = await linkNewDeviceByGeneratingQR(client(), onFailure, new AbortController().signal);
        emit({ event: "qr", hex: Buffer.from(flow.code).toString("hex") });
    }
    flowForCancel = flow;
    await flow.negotiateProtocols();
    if (args.side === "scans") emit({ event: "check_code", code: flow.checkCode });
    else await typeCheckCode(flow);
    const { verificationUri } = await flow.deviceAuthorizationGrant();
    emit({ event: "prompt", ask: "open_uri", uri: verificationUri });
    await next("opened");
    await flow.shareSecrets();
    const who = await getJson(homeserver + "/_matrix/client/v3/account/whoami", {
        headers: { authorization: `Bearer ${args["access-token"]}` },
    });
    return { user_id: who.body.user_id, device_id: who.body.device_id };
}

async function newDevice() {
    let flow;
    let hsName;
    if (args.side === "scans") {
        let qrServerName;
        ({ flow, qrServerName } = scannedFlow(undefined));
        flowForCancel = flow;
        await flow.negotiateProtocols();
        emit({ event: "check_code", code: flow.checkCode });
        hsName = qrServerName;
    } else {
        flow = await signInByGeneratingQR(client(), onFailure, new AbortController().signal);
        flowForCancel = flow;
        emit({ event: "qr", hex: Buffer.from(flow.code).toString("hex") });
        ({ serverName: hsName } = await flow.negotiateProtocols());
        await typeCheckCode(flow);
    }
    const { body: wellKnown } = await getJson(`https://${hsName}/.well-known/matrix/client`);
    const base = wellKnown["m.homeserver"].base_url.replace(/\/$/, "");
    const { body: metadata } = await getJson(base + "/_matrix/client/v1/auth_metadata");
    const clientMetadata = {
        client_name: "matrix-js-sdk check-client shim",
        client_uri: "https://shim.qrlogin.test/",
        grant_types: ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        token_endpoint_auth_method: "none",
    };
    const { response, body: registration } = await getJson(metadata.registration_endpoint, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(clientMetadata),
    });
    if (!response.ok) throw new Error(`client registration failed: ${JSON.stringify(registration)}`);
    const clientId = registration.client_id;
    const { verificationUri, userCode } = await flow.deviceAuthorizationGrant({
        metadata,
        clientId,
        deviceId: args["device-id"],
    });
    emit({ event: "user_code", user_code: userCode, uri: verificationUri });
    const tokens = await flow.completeLoginOnNewDevice({ clientId });
    await flow.shareSecrets();
    const who = await getJson(base + "/_matrix/client/v3/account/whoami", {
        headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    return { user_id: who.body.user_id, device_id: who.body.device_id };
}

try {
    const who = args.role === "existing" ? await existingDevice() : await newDevice();
    emit({ event: "done", outcome: "success", ...who });
    process.exit(0);
} catch (error) {
    emit({ event: "done", outcome: error?.code ?? "error", detail: String(error?.message ?? error) });
    process.exit(0);
}

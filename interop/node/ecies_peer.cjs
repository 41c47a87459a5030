// A deployed-ECIES peer for qrlogin's interop tests: vodozemac 0.11.0 as shipped in
// @matrix-org/matrix-sdk-crypto-wasm 18.9.0 (what Element Web and matrix-js-sdk run).
//
// Line protocol: one JSON object per line on stdin, one JSON reply per line on stdout.
//   {"op": "versions"}                          -> {"ok": true, "versions": {...}}
//   {"op": "new"}                               -> {"ok": true, "public_key": b64}          fresh Ecies (G or S)
//   {"op": "outbound", "public_key": b64, "plaintext": str}
//                                               -> {"ok": true, "message": str, "check_code": n, "check_bytes": [..]}
//   {"op": "inbound", "message": str}           -> {"ok": true, "plaintext": str, "check_code": n, "check_bytes": [..]}
//   {"op": "encrypt", "plaintext": str}         -> {"ok": true, "message": str}
//   {"op": "decrypt", "message": str}           -> {"ok": true, "plaintext": str}
//   {"op": "time", "rounds": n, "messages": m}  -> {"ok": true, "microseconds_per_handshake": x}
// Any failure answers {"ok": false, "error": "<the library's message>"} and the peer keeps running.
//
// Determinism: with QRLOGIN_PEER_SEED=<64 hex chars>, crypto.getRandomValues is replaced BEFORE the wasm module
// loads. vodozemac seeds its ChaCha12 RNG from one 32-byte getRandomValues call, so every key (and therefore every
// transcript) is a function of the seed. The stream is SHA-256(seed || counter) blocks.
"use strict";

const nodeCrypto = require("node:crypto");
const readline = require("node:readline");

const seedHex = process.env.QRLOGIN_PEER_SEED;
if (seedHex) {
    if (!/^[0-9a-f]{64}$/.test(seedHex)) throw new Error("QRLOGIN_PEER_SEED must be 64 lowercase hex characters");
    const seed = Buffer.from(seedHex, "hex");
    let counter = 0;
    const fill = (array) => {
        const view = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
        let offset = 0;
        while (offset < view.length) {
            const block = nodeCrypto.createHash("sha256").update(seed).update(String(counter++)).digest();
            const n = Math.min(block.length, view.length - offset);
            view.set(block.subarray(0, n), offset);
            offset += n;
        }
        return array;
    };
    Object.defineProperty(globalThis.crypto, "getRandomValues", { value: fill, configurable: true, writable: true });
}

const wasm = require("@matrix-org/matrix-sdk-crypto-wasm") // the "require"/"node" export: node.cjs;

let ecies = null; // an Ecies waiting to establish
let channel = null; // the EstablishedEcies

function checkCode(established) {
    const code = established.check_code();
    return { check_code: code.to_digit(), check_bytes: Array.from(code.as_bytes()) };
}

function timeHandshakes(rounds, messages) {
    const start = process.cpuUsage();
    for (let i = 0; i < rounds; i++) {
        const g = new wasm.Ecies();
        const s = new wasm.Ecies();
        const out = s.establish_outbound_channel(g.public_key(), "MATRIX_QR_CODE_LOGIN_INITIATE");
        const inb = g.establish_inbound_channel(out.initial_message);
        const gc = inb.channel;
        const sc = out.channel;
        if (inb.message !== "MATRIX_QR_CODE_LOGIN_INITIATE") throw new Error("bad initiate");
        if (sc.decrypt(gc.encrypt("MATRIX_QR_CODE_LOGIN_OK")) !== "MATRIX_QR_CODE_LOGIN_OK") throw new Error("bad ok");
        if (gc.check_code().to_digit() !== sc.check_code().to_digit()) throw new Error("check codes differ");
        for (let m = 0; m < messages; m++) {
            gc.decrypt(sc.encrypt(`{"type":"m.login.protocols","n":${m}}`));
            sc.decrypt(gc.encrypt(`{"type":"m.login.protocol","n":${m}}`));
        }
        for (const obj of [gc, sc, out, inb]) obj.free();
    }
    const used = process.cpuUsage(start); // CPU microseconds, like the Python side's time.process_time()
    return (used.user + used.system) / rounds;
}

function handle(request) {
    switch (request.op) {
        case "versions":
        {
            const v = wasm.getVersions();
            return {
                versions: { git_description: v.git_description, vodozemac: v.vodozemac, matrix_sdk_crypto: v.matrix_sdk_crypto },
            };
        }
        case "new":
            ecies = new wasm.Ecies();
            channel = null;
            return { public_key: ecies.public_key().toBase64() };
        case "outbound": {
            const result = ecies.establish_outbound_channel(
                new wasm.Curve25519PublicKey(request.public_key),
                request.plaintext,
            );
            ecies = null;
            channel = result.channel;
            return { message: result.initial_message, ...checkCode(channel) };
        }
        case "inbound": {
            const result = ecies.establish_inbound_channel(request.message);
            ecies = null;
            channel = result.channel;
            return { plaintext: result.message, ...checkCode(channel) };
        }
        case "encrypt":
            return { message: channel.encrypt(request.plaintext) };
        case "decrypt":
            return { plaintext: channel.decrypt(request.message) };
        case "time":
            return { microseconds_per_handshake: timeHandshakes(request.rounds, request.messages) };
        default:
            throw new Error(`unknown op ${request.op}`);
    }
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
    let reply;
    try {
        reply = { ok: true, ...handle(JSON.parse(line)) };
    } catch (error) {
        reply = { ok: false, error: String(error && error.message ? error.message : error) };
    }
    process.stdout.write(JSON.stringify(reply) + "\n");
});

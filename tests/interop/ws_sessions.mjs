// Opens N websocket sessions to one channel of a real odoo/sfu and keeps them open until killed.
//
// Usage: node ws_sessions.mjs URL CHANNEL_UUID CHANNEL_KEY N [FIRST_SESSION_ID]
//   URL          ws://127.0.0.1:PORT of the SFU
//   CHANNEL_KEY  the channel's `key` claim as given when it was created (the SFU decodes it
//                as base64 and checks the sessions' tokens with it)
// Each session authenticates as a browser does: its first message is
// {"channelUUID", "jwt"} where the jwt (HS256, CHANNEL_KEY) carries sfu_channel_uuid,
// session_id and exp. The SFU answers an empty message once the session joined. When all N
// joined, one line "OPEN N" goes to stdout; a session refused or closed before that is
// reported on stderr and ends the program with status 1. A session the SFU closes later (a
// kick by /v1/disconnect, say) is reported on stderr and the others stay; the program exits
// 0 when none is left. Pings of the SFU are answered, so the sessions outlive its ping
// timeout. SIGTERM or SIGINT closes the sockets and exits 0.
import crypto from "node:crypto";
import process from "node:process";

import { WebSocket } from "ws";

const [url, channelUUID, channelKey, countArg, firstArg] = process.argv.slice(2);
const count = Number(countArg);
const first = Number(firstArg ?? 1);
if (!url || !channelUUID || !channelKey || !(count >= 1 && count <= 1000) ||
    !Number.isInteger(first)) {
    console.error("usage: ws_sessions.mjs URL CHANNEL_UUID CHANNEL_KEY N [FIRST_SESSION_ID]");
    process.exit(2);
}

function b64url(data) {
    return Buffer.from(data).toString("base64url");
}

function sessionToken(sessionId) {
    const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    const claims = b64url(JSON.stringify({
        sfu_channel_uuid: channelUUID,
        session_id: sessionId,
        exp: Math.floor(Date.now() / 1000) + 3600
    }));
    const key = Buffer.from(channelKey, "base64");
    const signature = crypto.createHmac("sha256", key).update(`${header}.${claims}`).digest();
    return `${header}.${claims}.${b64url(signature)}`;
}

const sockets = [];
let joined = 0;
let closed = 0;
let stopping = false;

function fail(message) {
    if (stopping) {
        return;
    }
    stopping = true;
    console.error(`ws_sessions: ${message}`);
    for (const ws of sockets) {
        ws.terminate();
    }
    process.exit(1);
}

function open(sessionId) {
    const ws = new WebSocket(url);
    let authenticated = false;
    sockets.push(ws);
    ws.on("open", () => {
        ws.send(JSON.stringify({ channelUUID, jwt: sessionToken(sessionId) }));
    });
    ws.on("message", (data) => {
        const text = data.toString();
        if (!authenticated) {
            // The SFU's first message after a successful join is an empty one.
            authenticated = true;
            joined++;
            if (joined === count) {
                process.stdout.write(`OPEN ${count}\n`);
            }
            return;
        }
        let payloads;
        try {
            payloads = JSON.parse(text);
        } catch {
            return;
        }
        for (const payload of Array.isArray(payloads) ? payloads : []) {
            if (payload && payload.needResponse) {
                ws.send(JSON.stringify([{ message: null, responseTo: payload.needResponse }]));
            }
        }
    });
    ws.on("close", (code) => {
        if (joined < count) {
            fail(`session ${sessionId} closed with code ${code} before all joined`);
            return;
        }
        console.error(`ws_sessions: session ${sessionId} closed with code ${code}`);
        if (++closed === count) {
            process.exit(0);
        }
    });
    ws.on("error", (error) => {
        if (joined < count) {
            fail(`session ${sessionId}: ${error.message}`);
        }
    });
}

function stop() {
    stopping = true;
    for (const ws of sockets) {
        ws.close(1000);
    }
    process.exit(0);
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
for (let i = 0; i < count; i++) {
    open(first + i);
}

// Starts the odoo/sfu HTTP and auth services without media workers, for interop tests.
//
// Copied into a prepared copy of odoo/sfu (scripts/interop-peer.sh) so that its "#src/*"
// imports resolve there. Media workers need mediasoup's C++ worker, which the prepared copy
// does not build: channel requests must use ?webRTC=false. Websocket sessions still work.
// Like src/server.ts, a stop closes every channel (and so every session) and the HTTP
// server; SIGTERM is handled too, so that a test's graceful stop is a clean one.
import * as auth from "#src/services/auth.ts";
import * as http from "#src/services/http.ts";
import { Channel } from "#src/models/channel.ts";

let stopping = false;

function stop(signal: string): void {
    if (stopping) {
        process.exit(1);
    }
    stopping = true;
    Channel.closeAll();
    http.close();
    console.error(`odoo-sfu interop: stopped by ${signal}`);
    process.exit(0);
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

auth.start();
await http.start();
console.error(`odoo-sfu interop: ready pid=${process.pid} port=${process.env.PORT}`);

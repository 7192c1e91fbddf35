// Starts the odoo/sfu HTTP and auth services without media workers, for interop tests.
//
// Copied into a prepared copy of odoo/sfu (scripts/interop-peer.sh) so that its "#src/*"
// imports resolve there. Media workers need mediasoup's C++ worker, which the prepared copy
// does not build: channel requests must use ?webRTC=false. Websocket sessions still work.
// Like src/server.ts, a stop closes every channel (and so every session) and the HTTP
// server; SIGTERM is handled too, so that a test's graceful stop is a clean one.
//
// With SFU_GATEWAY_URL set, the copy must carry etc/odoo-sfu/0003 (its gateway service):
// the heartbeats start once the HTTP service listens, and a stop signs off from the
// gateways first, as the patched src/server.ts does. In an unpatched copy the import fails
// and the process exits with the error, so a test cannot mistake one copy for the other.
import * as auth from "#src/services/auth.ts";
import * as http from "#src/services/http.ts";
import { Channel } from "#src/models/channel.ts";

const gateway = process.env.SFU_GATEWAY_URL
    ? await import("#src/services/gateway.ts")
    : undefined;

let stopping = false;

async function stop(signal: string): Promise<void> {
    if (stopping) {
        process.exit(1);
    }
    stopping = true;
    await gateway?.signOff();
    Channel.closeAll();
    http.close();
    console.error(`odoo-sfu interop: stopped by ${signal}`);
    process.exit(0);
}

process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));

auth.start();
await http.start();
gateway?.start();
console.error(`odoo-sfu interop: ready pid=${process.pid} port=${process.env.PORT}`);

// Driven by tests/e2e/test_js_clients.py: graphql-ws's createClient (examples/node/live.mjs)
// against a real server. Writes one JSON line per event on stdout:
//   {"event":"ready"}           connected (connection_ack) and subscribed; fire the event now
//   {"event":"update", ...}     the first update received (then the client disposes, exits)
//   {"event":"closed", code}    the server closed the socket (a refused token: 4403)
//   {"event":"error", ...}      anything else
//
//   node tests/js/live_updates.mjs <ws url> <token> <order code>
import { createLiveClient, follow } from "../../examples/node/live.mjs";

const [url, token, code] = process.argv.slice(2);
const say = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
let done = false;

const client = createLiveClient({
  url,
  token,
  // the subscribe message goes out right after the ack; give the server a moment to
  // register the subscription before the test fires the carrier event
  onConnected: () => setTimeout(() => say({ event: "ready" }), 300),
  onClosed: (event) => {
    if (!done) say({ event: "closed", code: event.code, reason: event.reason });
    done = true;
  },
});

follow(client, code, {
  onUpdate: async (update) => {
    say({ event: "update", update });
    done = true;
    await client.dispose();
  },
  onError: (error) => {
    if (error?.code === undefined) say({ event: "error", error: error?.message ?? error });
  },
});

setTimeout(() => {
  say({ event: "error", error: "no update within 20 s" });
  process.exit(2);
}, 20000).unref();

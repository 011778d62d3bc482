// Live order updates over WebSocket with `graphql-ws` (the graphql-transport-ws protocol).
//
//   node examples/node/live.mjs ws://127.0.0.1:8000/graphql <accessToken> <order code>
//
// prints each update of the order as one JSON line until interrupted.
//
// The access token goes in the connection_init payload (`Authorization: Bearer …`): a
// bad, expired or logged-out token closes the connection with 4403 before any operation;
// a logout ends the stream (the subscription completes). In a browser, leave out
// `webSocketImpl` (the global WebSocket is used).
import { createClient } from "graphql-ws";
import WebSocket from "ws";

export const ORDER_UPDATES = `
  subscription OrderUpdates($code: String!) {
    orderUpdates(code: $code) {
      type
      order { code status shipments { trackingNumber status events { status location } } }
    }
  }
`;

/**
 * A graphql-ws client for `url` authenticated by `token`. `onClosed(event)` sees the close
 * code (4403: the token was refused). No reconnection here: a real app reconnects on
 * network loss (the default `retryAttempts`) and logs in again on 4403.
 */
export function createLiveClient({ url, token, onConnected = () => {}, onClosed = () => {} }) {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: () => (token ? { Authorization: `Bearer ${token}` } : {}),
    retryAttempts: 0,
    lazy: true,
    on: { connected: onConnected, closed: onClosed },
  });
}

/** Follow one order: `onUpdate(update)` per event; returns a function that stops. */
export function follow(client, code, { onUpdate, onError = () => {}, onComplete = () => {} }) {
  return client.subscribe(
    { query: ORDER_UPDATES, variables: { code } },
    {
      next: ({ data, errors }) => (errors ? onError(errors) : onUpdate(data.orderUpdates)),
      error: onError,
      complete: onComplete,
    },
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [url, token, code] = process.argv.slice(2);
  const client = createLiveClient({
    url,
    token,
    onClosed: (event) => process.stderr.write(`closed ${event.code} ${event.reason}\n`),
  });
  follow(client, code, {
    onUpdate: (update) => process.stdout.write(`${JSON.stringify(update)}\n`),
    onError: (error) => process.stderr.write(`${JSON.stringify(error?.message ?? error)}\n`),
    onComplete: () => client.dispose(),
  });
}

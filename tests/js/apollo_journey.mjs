// Driven by tests/e2e/test_js_clients.py: Apollo Client 4 (examples/node/apollo.mjs, as a
// user would build it) against a real server. Every request and answer crosses the network;
// the fetch given to HttpLink is node's own, wrapped only to record what was exchanged.
// Prints one JSON object for the test to check.
//
//   node tests/js/apollo_journey.mjs <graphql url> <email> <password>
import {
  MY_ORDERS,
  ORDER,
  createOrdersClient,
  logIn,
} from "../../examples/node/apollo.mjs";

const [url, email, password] = process.argv.slice(2);
const exchanges = [];
const linkErrors = [];

async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const body = JSON.parse(init.body);
  exchanges.push({
    operationName: body.operationName,
    sentQuery: typeof body.query === "string",
    sentHash: body.extensions?.persistedQuery?.sha256Hash ?? null,
    accept: new Headers(init.headers).get("accept"),
    status: response.status,
    contentType: response.headers.get("content-type"),
    retryAfterHeader: response.headers.get("retry-after"),
  });
  return response;
}

let token = null;
const client = createOrdersClient({
  url,
  getToken: () => token,
  onError: (error) => linkErrors.push(error),
  fetch: recordingFetch,
});

token = (await logIn(client, email, password)).accessToken;
const history = await client.query({ query: MY_ORDERS, variables: { first: 10 } });
const codes = history.data.myOrders.edges.map(({ node }) => node.code);
const first = await client.query({ query: ORDER, variables: { code: codes[0] } });
const again = await client.query({
  query: ORDER,
  variables: { code: codes[0] },
  fetchPolicy: "network-only",
});

// Spend the lookup budget until the API refuses (the server runs with a small budget).
let limited = null;
for (let attempt = 0; attempt < 50 && limited === null; attempt += 1) {
  const result = await client.query({
    query: ORDER,
    variables: { code: codes[0] },
    fetchPolicy: "network-only",
    errorPolicy: "all",
  });
  if (result.error) {
    limited = {
      errorName: result.error.name,
      errors: (result.error.errors ?? []).map(({ message, extensions }) => ({
        message,
        extensions,
      })),
      data: result.data ?? null,
    };
  }
}

process.stdout.write(
  `${JSON.stringify({
    loggedIn: typeof token === "string" && token.length > 20,
    orders: codes,
    order: first.data.order,
    orderAgain: again.data.order,
    exchanges,
    linkErrors,
    limited,
  })}\n`,
);

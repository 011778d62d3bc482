// Apollo Client 4 against orders-api, with automatic persisted queries.
//
//   node examples/node/apollo.mjs http://127.0.0.1:8000/graphql alice@example.com orders-demo-2026
//
// logs in, lists the customer's orders and opens the newest one by its code, printing JSON.
//
// What the client relies on (see the README, "GraphQL over HTTP and client compatibility"):
// - HttpLink asks for `application/graphql-response+json, application/json;q=0.9`; the API
//   answers in application/graphql-response+json, so Apollo reads the body of a non-2xx
//   answer too: a 429 RATE_LIMITED reaches the error link as CombinedGraphQLErrors with
//   `extensions.code` and `extensions.retryAfter` (seconds), like every other refusal.
// - PersistedQueryLink sends the SHA-256 of the document first; the API answers an unknown
//   hash with `PersistedQueryNotFound` and the link sends the text once; from then on the
//   hash alone is sent. sha256 comes from node's crypto (in a browser: crypto.subtle).
// - The access token goes in `Authorization: Bearer …`, never in a cookie.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { CombinedGraphQLErrors } from "@apollo/client/errors";
import { SetContextLink } from "@apollo/client/link/context";
import { ErrorLink } from "@apollo/client/link/error";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";

export const LOGIN = gql`
  mutation Login($email: String!, $password: String!) {
    login(email: $email, password: $password) {
      tokens { accessToken refreshToken expiresIn }
      userErrors { field message code }
    }
  }
`;

export const MY_ORDERS = gql`
  query MyOrders($first: Int) {
    myOrders(first: $first) {
      edges { node { code status placedAt total { amount currency } } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

export const ORDER = gql`
  query Order($code: String!) {
    order(code: $code) {
      code
      status
      estimatedDelivery
      total { amount currency }
      shipments { carrier trackingNumber status }
    }
  }
`;

export const sha256 = (text) => createHash("sha256").update(text).digest("hex");

/**
 * An ApolloClient for the API at `url`.
 * - `getToken()` returns the current access token (or null when logged out).
 * - `onError({ operation, code, retryAfter, message })` is called by the error link for
 *   each GraphQL error (`code` is `extensions.code`); a UI shows "try again in
 *   `retryAfter` s" for RATE_LIMITED and sends the user to log in on UNAUTHENTICATED.
 * - `fetch` defaults to the global fetch.
 */
export function createOrdersClient({ url, getToken = () => null, onError = () => {}, fetch }) {
  const errors = new ErrorLink(({ error, operation }) => {
    if (!CombinedGraphQLErrors.is(error)) return; // network or protocol errors: not ours
    for (const { message, extensions } of error.errors) {
      onError({
        operation: operation.operationName,
        code: extensions?.code,
        retryAfter: extensions?.retryAfter,
        message,
      });
    }
  });
  const auth = new SetContextLink(({ headers }) => {
    const token = getToken();
    return { headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } };
  });
  const persisted = new PersistedQueryLink({ sha256 });
  const http = new HttpLink({ uri: url, ...(fetch ? { fetch } : {}) });
  return new ApolloClient({
    link: ApolloLink.from([errors, auth, persisted, http]),
    cache: new InMemoryCache(),
  });
}

/** Log in; returns the token pair, or throws with the userErrors' codes. */
export async function logIn(client, email, password) {
  const { data } = await client.mutate({ mutation: LOGIN, variables: { email, password } });
  const { tokens, userErrors } = data.login;
  if (userErrors.length) throw new Error(`login refused: ${userErrors.map((e) => e.code)}`);
  return tokens;
}

async function main([url, email, password]) {
  let token = null;
  const client = createOrdersClient({
    url,
    getToken: () => token,
    onError: (error) => process.stderr.write(`${JSON.stringify(error)}\n`),
  });
  token = (await logIn(client, email, password)).accessToken;
  const { data: history } = await client.query({ query: MY_ORDERS, variables: { first: 5 } });
  const codes = history.myOrders.edges.map(({ node }) => node.code);
  const { data: newest } = codes.length
    ? await client.query({ query: ORDER, variables: { code: codes[0] } })
    : { data: null };
  process.stdout.write(`${JSON.stringify({ orders: codes, newest: newest?.order }, null, 2)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main(process.argv.slice(2));
}

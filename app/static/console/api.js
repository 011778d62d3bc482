// The console's GraphQL client: the same bearer tokens as every other client.
//
// Tokens live in sessionStorage: a picker who reloads the page (or the scanner's Enter
// lands on the address bar) stays logged in, but the tokens are this tab's only — not
// shared with other tabs, gone when the tab closes, never in a cookie (nothing another
// site could make the browser send). The strict Content-Security-Policy is what keeps
// injected script from reading them.
const STORE = "orders-console.tokens";
const ENDPOINT = "/graphql";

export class ApiError extends Error {
  constructor(code, message, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

let tokens = readTokens();
const listeners = new Set();

function readTokens() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || "null");
  } catch {
    return null;
  }
}

function saveTokens(value) {
  tokens = value;
  if (value) sessionStorage.setItem(STORE, JSON.stringify(value));
  else sessionStorage.removeItem(STORE);
}

export function hasSession() {
  return Boolean(tokens && tokens.accessToken);
}

/** Called with an ApiError when the session ended (UNAUTHENTICATED, refresh failed). */
export function onSessionEnded(listener) {
  listeners.add(listener);
}

async function post(query, variables, accessToken) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json",
  };
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
      credentials: "omit",
    });
  } catch {
    throw new ApiError("NETWORK", "The server cannot be reached.");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("SERVICE_UNAVAILABLE", `The server answered ${response.status}.`);
  }
  if (response.status === 429 && !(body.errors || []).length) {
    const wait = Number(response.headers.get("Retry-After") || "0");
    throw new ApiError("RATE_LIMITED", "Rate limited.", { retryAfter: wait });
  }
  return body;
}

function firstError(body) {
  const error = (body.errors || [])[0];
  if (!error) return null;
  const ext = error.extensions || {};
  return new ApiError(ext.code || "INTERNAL", error.message, ext);
}

const REFRESH = `mutation Refresh($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) {
    tokens { accessToken refreshToken }
    userErrors { code message }
  }
}`;

// One refresh at a time: screens load several things at once, and spending the same
// refresh token twice counts as reuse of a stolen token (the API ends the session).
let refreshing = null;

function refresh() {
  if (!refreshing) {
    refreshing = refreshOnce().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function refreshOnce() {
  if (!tokens || !tokens.refreshToken) return false;
  const body = await post(REFRESH, { refreshToken: tokens.refreshToken });
  const payload = body.data && body.data.refreshToken;
  if (payload && payload.tokens) {
    saveTokens({ accessToken: payload.tokens.accessToken, refreshToken: payload.tokens.refreshToken });
    return true;
  }
  return false;
}

function endSession(error) {
  saveTokens(null);
  for (const listener of listeners) listener(error);
}

/** Run an operation; its data, or an ApiError for the first top-level error. An
 * UNAUTHENTICATED answer tries the refresh token once; if that fails too, the session
 * has ended (listeners are told, the console goes back to the login). */
export async function gql(query, variables = {}) {
  const sentWith = tokens && tokens.accessToken;
  let body = await post(query, variables, sentWith);
  let error = firstError(body);
  if (error && error.code === "UNAUTHENTICATED" && tokens) {
    // another request may have refreshed the tokens while this one was out
    const renewed = tokens.accessToken !== sentWith || (await refresh());
    if (renewed && tokens) {
      body = await post(query, variables, tokens.accessToken);
      error = firstError(body);
    }
    if (error && error.code === "UNAUTHENTICATED") {
      endSession(error);
      throw error;
    }
  }
  if (error) {
    error.data = body.data;
    throw error;
  }
  return body.data;
}

const LOGIN = `mutation ConsoleLogin($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    user { email name role }
    tokens { accessToken refreshToken }
    userErrors { field message code }
  }
}`;

/** Log in: {user} or {userErrors}. */
export async function login(email, password) {
  saveTokens(null);
  const data = await gql(LOGIN, { email, password });
  const payload = data.login;
  if (payload.tokens) {
    saveTokens({ accessToken: payload.tokens.accessToken, refreshToken: payload.tokens.refreshToken });
  }
  return payload;
}

const LOGOUT = `mutation ConsoleLogout { logout { ok } }`;
export const ME = `query ConsoleMe { me { email name role } }`;

export async function logout() {
  try {
    if (hasSession()) await gql(LOGOUT);
  } catch {
    // the session may have ended already; forget it here either way
  }
  saveTokens(null);
}

/** A top-level error in words for the person at the desk or the packing bench. */
export function explain(error) {
  const code = error && error.code;
  switch (code) {
    case "FORBIDDEN":
      return "Your account is not allowed to do this. Ask an admin if you need it.";
    case "RATE_LIMITED": {
      const wait = Number((error.extensions || {}).retryAfter || 0);
      return wait > 0
        ? `Too many lookups for now. Wait ${wait} seconds, then try again.`
        : "Too many lookups for now. Wait a moment, then try again.";
    }
    case "SERVICE_UNAVAILABLE":
      return "The system is not available right now. Wait a minute and try again; if it keeps happening, tell your supervisor.";
    case "UNAUTHENTICATED":
      return "Your session has ended. Please log in again.";
    case "ORDER_NOT_FOUND":
      return "No order found for this code. Read it back to the customer and check each character.";
    case "INVALID_ORDER_CODE":
      return "This is not a valid code: it should be 16 letters and digits (dashes and spaces do not matter). Check it again.";
    case "BAD_USER_INPUT":
    case "CONFLICT":
      return error.message;
    case "NETWORK":
      return "The server cannot be reached. Check the network connection and try again.";
    default:
      return `Something went wrong (${code || "unknown"}). Try again; if it keeps happening, tell your supervisor.`;
  }
}

// Every document the session code sends (validated against schema.graphql by the tests).
// Documents are module-level `const NAME = \`…\`` template literals that interpolate only
// other such constants of the same file: `orders-api export-persisted-queries` resolves
// them the same way, so a PERSISTED_QUERIES=allowlist deployment accepts these very texts.
export const DOCUMENTS = { LOGIN, REFRESH, LOGOUT, ME };

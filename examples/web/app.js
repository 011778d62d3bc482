// A minimal browser front end for orders-api: plain ES module, no build step, no
// dependencies, nothing loaded from the internet.
//
// Serve this folder from an origin listed in the API's CORS_ORIGINS and open
// index.html?api=http://127.0.0.1:8000/graphql (that URL is the default).
//
// The same module runs track/index.html, the public page of a shared tracking link
// (track/#<token>): no login, only what the API's trackingLink shows.
//
// Tokens: the access token lives in memory only; the refresh token in sessionStorage (this
// tab only, gone when the tab closes), so a reload resumes the session without the password.
// When the API answers UNAUTHENTICATED (the short-lived access token expired), the refresh
// token is spent once for a new pair and the request is sent again.

const DEFAULT_API = "http://127.0.0.1:8000/graphql";
const PAGE_SIZE = 3; // small, so that the demo customer (4 orders) sees "More" at work
const REFRESH_KEY = "orders-api-example.refreshToken";
const RETURN_REASONS = [
  "DAMAGED",
  "DEFECTIVE",
  "WRONG_ITEM",
  "NOT_AS_DESCRIBED",
  "NO_LONGER_NEEDED",
  "OTHER",
];

// -- GraphQL documents (field names as in schema.graphql) ---------------------------------
// Whole documents, no `${…}` pieces: `orders-api export-persisted-queries` reads them from
// this file into the API's allow-list, so a deployment with PERSISTED_QUERIES=allowlist
// accepts exactly these (and the mobile example's) operations.

const LOGIN = `mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    user { email name }
    tokens { accessToken refreshToken expiresIn }
    userErrors { field message code }
  }
}`;
const REFRESH = `mutation Refresh($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) {
    user { email name }
    tokens { accessToken refreshToken expiresIn }
    userErrors { field message code }
  }
}`;
const LOGOUT = `mutation Logout { logout { ok userErrors { field message code } } }`;

const MY_ORDERS = `query MyOrders($first: Int, $after: String) {
  myOrders(first: $first, after: $after) {
    edges { node { code status placedAt total { amount currency } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const ORDER = `query Order($code: String!) { order(code: $code) { ...OrderDetail } }
fragment OrderDetail on Order {
  code status placedAt updatedAt estimatedDelivery
  subtotal { amount currency } shipping { amount currency } tax { amount currency }
  total { amount currency } refunded { amount currency }
  shippingAddress { name line1 line2 city postalCode country }
  payment { brand last4 }
  lines { sku name quantity unitPrice { amount currency } lineTotal { amount currency } }
  shipments {
    carrier trackingNumber status estimatedDelivery shippedAt deliveredAt
    events { status location description occurredAt }
  }
  returns { rma status }
}`;
const FOLLOW_ORDER = `subscription FollowOrder($code: String!) {
  orderUpdates(code: $code) { type occurredAt order { ...OrderDetail } }
}
fragment OrderDetail on Order {
  code status placedAt updatedAt estimatedDelivery
  subtotal { amount currency } shipping { amount currency } tax { amount currency }
  total { amount currency } refunded { amount currency }
  shippingAddress { name line1 line2 city postalCode country }
  payment { brand last4 }
  lines { sku name quantity unitPrice { amount currency } lineTotal { amount currency } }
  shipments {
    carrier trackingNumber status estimatedDelivery shippedAt deliveredAt
    events { status location description occurredAt }
  }
  returns { rma status }
}`;

const RETURN_ELIGIBILITY = `query ReturnEligibility($code: String!) {
  returnEligibility(code: $code) {
    windowDays canReturn
    lines { sku name returnableQuantity returnableUntil reason }
  }
}`;
const REQUEST_RETURN = `mutation RequestReturn(
  $code: String!, $lines: [ReturnLineInput!]!, $reason: ReturnReason!, $comment: String
) {
  requestReturn(code: $code, lines: $lines, reason: $reason, comment: $comment) {
    returnRequest { rma status lines { sku name quantity } }
    userErrors { field message code }
  }
}`;

// Share tracking: a link anyone may open, showing carrier, status, towns and the estimate
// (no items, address, payment or order code); its token is shown once, at creation.
const CREATE_TRACKING_LINK = `mutation CreateTrackingLink($code: String!, $expiresInHours: Int!) {
  createTrackingLink(code: $code, expiresInHours: $expiresInHours) {
    link { token expiresAt }
    userErrors { field message code }
  }
}`;
const REVOKE_TRACKING_LINK = `mutation RevokeTrackingLink($token: String!) {
  revokeTrackingLink(token: $token) { ok userErrors { field message code } }
}`;
const TRACKING_LINK = `query TrackingLink($token: String!) {
  trackingLink(token: $token) {
    estimatedDelivery
    shipments { carrier status estimatedDelivery events { status location occurredAt } }
  }
}`;
const SHARE_HOURS = 72;

// -- configuration ------------------------------------------------------------------------

function configuredApi() {
  const given = new URLSearchParams(location.search).get("api");
  if (!given) return DEFAULT_API;
  const url = new URL(given, location.href);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`?api= must be an http(s) URL, got ${given}`);
  }
  return url.href;
}

let API = DEFAULT_API;
try {
  API = configuredApi();
} catch (error) {
  queueMicrotask(() => showErrors([{ code: "BAD_USER_INPUT", message: String(error.message) }]));
}
const WS_URL = API.replace(/^http/, "ws"); // http→ws, https→wss

// -- errors -------------------------------------------------------------------------------

/** Top-level `errors[]` (code in extensions.code) or a payload's `userErrors[]`. */
class ApiError extends Error {
  constructor(errors) {
    super(errors.map((e) => `${e.code}: ${e.message}`).join("; "));
    this.errors = errors;
  }

  get codes() {
    return this.errors.map((e) => e.code);
  }

  static fromGraphQL(errors) {
    return new ApiError(
      errors.map((e) => ({
        code: e.extensions?.code ?? "INTERNAL",
        message: e.message,
        retryAfter: e.extensions?.retryAfter,
      })),
    );
  }
}

function asErrors(error) {
  if (error instanceof ApiError) return error.errors;
  console.error(error);
  return [{ code: "CLIENT_ERROR", message: String(error?.message ?? error) }];
}

// -- GraphQL over HTTP, with the token refresh ------------------------------------------

let session = null; // { accessToken, user }: memory only
let refreshing = null; // the refresh in flight, shared by everyone who needs it

async function post(query, variables, accessToken) {
  const headers = { "Content-Type": "application/json" };
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  const operationName = /^\s*(?:query|mutation|subscription)\s+(\w+)/.exec(query)?.[1];
  let response;
  try {
    response = await fetch(API, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables, operationName }),
    });
  } catch (error) {
    throw new ApiError([
      { code: "NETWORK_ERROR", message: `The API at ${API} cannot be reached (${error.message}).` },
    ]);
  }
  try {
    return await response.json(); // also for 429 / 400: the body says why, with a code
  } catch {
    throw new ApiError([{ code: "INTERNAL", message: `HTTP ${response.status} without JSON` }]);
  }
}

const isUnauthenticated = (body) =>
  (body.errors ?? []).some((e) => e.extensions?.code === "UNAUTHENTICATED");

/** Run an operation; as the logged-in user unless `auth` is false. Returns `data` or throws. */
async function graphql(query, variables = {}, { auth = true } = {}) {
  const token = auth ? session?.accessToken : null;
  let body = await post(query, variables, token);
  if (token && isUnauthenticated(body) && sessionStorage.getItem(REFRESH_KEY)) {
    // Expired (or ended) access token: a fresh pair, then once more. If another request
    // has refreshed meanwhile, its new token is simply used.
    if (session?.accessToken === token) await refreshTokens();
    body = await post(query, variables, session?.accessToken);
  }
  if (body.errors?.length) throw ApiError.fromGraphQL(body.errors);
  return body.data;
}

/** A mutation's payload, or ApiError from its userErrors. */
function payloadOf(data, field) {
  const payload = data[field];
  if (payload.userErrors?.length) throw new ApiError(payload.userErrors);
  return payload;
}

function keepTokens(payload) {
  const { accessToken, refreshToken } = payload.tokens;
  sessionStorage.setItem(REFRESH_KEY, refreshToken);
  session = { accessToken, user: payload.user ?? session?.user ?? null };
}

/** Spend the refresh token for a new pair (one refresh at a time: a spent token presented
 * again would end the session). A refused refresh ends the session here too. */
function refreshTokens() {
  refreshing ??= (async () => {
    const stored = sessionStorage.getItem(REFRESH_KEY);
    if (!stored) throw new ApiError([{ code: "UNAUTHENTICATED", message: "Please log in." }]);
    const data = await graphql(REFRESH, { refreshToken: stored }, { auth: false });
    const payload = data.refreshToken;
    if (payload.userErrors.length || !payload.tokens) {
      endSession();
      throw new ApiError(payload.userErrors);
    }
    keepTokens(payload);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// -- live updates: graphql-transport-ws over the browser's WebSocket ---------------------

let subscriptionIds = 0;

class OrderFollower {
  constructor(code, { onUpdate, onState }) {
    this.code = code;
    this.onUpdate = onUpdate;
    this.onState = onState;
    this.ws = null;
    this.id = null;
    this.attempts = 0;
    this.authRetried = false;
    this.stopped = false;
    this.finished = false;
    this.timer = null;
  }

  start() {
    this.connect();
    return this;
  }

  connect() {
    this.onState("connecting", "connecting…");
    const ws = new WebSocket(WS_URL, "graphql-transport-ws");
    this.ws = ws;
    const send = (message) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(message));
    ws.onopen = () => {
      // The server authenticates the whole connection from this payload.
      const payload = session ? { Authorization: `Bearer ${session.accessToken}` } : {};
      send({ type: "connection_init", payload });
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "connection_ack":
          this.id = String(++subscriptionIds);
          send({
            id: this.id,
            type: "subscribe",
            payload: {
              query: FOLLOW_ORDER,
              operationName: "FollowOrder",
              variables: { code: this.code },
            },
          });
          this.attempts = 0;
          this.authRetried = false;
          this.onState("live", "live");
          break;
        case "ping":
          send({ type: "pong", payload: message.payload });
          break;
        case "next":
          if (message.id !== this.id) break;
          if (message.payload.errors?.length) {
            showErrors(ApiError.fromGraphQL(message.payload.errors).errors);
          }
          if (message.payload.data?.orderUpdates) this.onUpdate(message.payload.data.orderUpdates);
          break;
        case "error": // the subscription was refused (payload: GraphQL errors)
          if (message.id !== this.id) break;
          showErrors(ApiError.fromGraphQL(message.payload).errors);
          this.finish(ws, "stopped", "stopped");
          break;
        case "complete": // e.g. the session ended (logout here or on another device)
          if (message.id !== this.id) break;
          this.finish(ws, "ended", "ended by the server");
          break;
        default:
          break;
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws || this.stopped || this.finished) return;
      if (event.code === 4403 && !this.authRetried && sessionStorage.getItem(REFRESH_KEY)) {
        // connection_init refused: the access token expired. New pair, then reconnect.
        this.authRetried = true;
        refreshTokens().then(
          () => this.stopped || this.connect(),
          (error) => {
            showErrors(asErrors(error));
            this.onState("stopped", "stopped");
          },
        );
        return;
      }
      if (event.code === 4403) {
        showErrors([{ code: "UNAUTHENTICATED", message: "Live updates refused: log in again." }]);
        this.onState("stopped", "stopped");
        return;
      }
      const delay = Math.min(30_000, 1000 * 2 ** this.attempts++);
      this.onState("reconnecting", `disconnected (${event.code}), retrying in ${delay / 1000} s`);
      this.timer = setTimeout(() => this.stopped || this.connect(), delay);
    };
  }

  finish(ws, state, label) {
    this.finished = true;
    this.onState(state, label);
    ws.close(1000);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    if (!ws) return;
    if (ws.readyState === WebSocket.OPEN && this.id && !this.finished) {
      ws.send(JSON.stringify({ id: this.id, type: "complete" }));
    }
    ws.close(1000);
  }
}

// -- DOM helpers (text only: nothing from the API is parsed as HTML) ------------------------

const $ = (selector) => document.querySelector(selector);

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function money({ amount, currency }) {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
  return format.format(amount / 10 ** format.resolvedOptions().maximumFractionDigits);
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const day = (iso) => (iso ? new Date(`${iso.slice(0, 10)}T12:00:00Z`).toLocaleDateString() : "");
/** IN_TRANSIT → "In transit" */
const words = (constant) =>
  constant.charAt(0) + constant.slice(1).toLowerCase().replaceAll("_", " ");
/** 2026-12-04 → "4 Dec" (the date the carrier gave, whatever the reader's time zone) */
const shortDay = (iso) =>
  new Date(`${iso.slice(0, 10)}T12:00:00Z`).toLocaleDateString("en-GB", {
    day: "numeric",
    month: "short",
    timeZone: "UTC",
  });

/** The town in a carrier's location: "10115 Berlin, DE" → "Berlin", "Leipzig" as it is.
 * (A shared link's events already carry just a recognised town.) */
function townOf(location) {
  const first = (location ?? "").split(",")[0].trim();
  return first.replace(/^(?:[A-Z]*[0-9][0-9A-Z-]*\s+)+/, "").trim();
}

/** A tracking event in words for people: "Out for delivery in Berlin", "Delivered",
 * "Delayed: now expected 4 Dec". `estimate` is the parcel's current estimate (given for
 * its newest event only: an old delay's date has moved on since). */
function eventSentence(event, estimate = null) {
  const town = townOf(event.location);
  const inTown = town ? ` in ${town}` : "";
  switch (event.status) {
    case "LABEL_CREATED":
      return "Label created: waiting for the carrier";
    case "IN_TRANSIT":
      return town ? `On its way, now in ${town}` : "On its way";
    case "OUT_FOR_DELIVERY":
      return `Out for delivery${inTown}`;
    case "ATTEMPTED_DELIVERY":
      return `Delivery attempted${inTown}`;
    case "DELAYED":
      return estimate ? `Delayed: now expected ${shortDay(estimate)}` : "Delayed";
    case "DELIVERED":
      return "Delivered";
    case "EXCEPTION":
      return `A problem with the delivery${inTown}`;
    default:
      return words(event.status);
  }
}

function showErrors(errors, { append = false } = {}) {
  const area = $("#messages");
  if (!append) area.replaceChildren();
  for (const e of errors) {
    const retry = e.retryAfter ? ` Try again in ${e.retryAfter} s.` : "";
    area.append(
      h(
        "p",
        { class: "message error", dataset: { code: e.code } },
        h("strong", { class: "code" }, e.code),
        " ",
        e.message + retry,
        e.field ? h("span", { class: "field" }, ` (${e.field})`) : null,
      ),
    );
  }
}

function showNotice(text) {
  $("#messages").replaceChildren(h("p", { class: "message notice" }, text));
}

const clearMessages = () => $("#messages").replaceChildren();

/** Run a user action: clear old messages, show any error by its code. */
async function action(work) {
  clearMessages();
  try {
    await work();
  } catch (error) {
    showErrors(asErrors(error));
  }
}

// -- screens ------------------------------------------------------------------------------

let ordersCursor = null;
let follower = null;
let current = null; // { code, eventKeys }

// -- the order named in the URL fragment ---------------------------------------------------
// An email links to {SHOP_URL}/orders#<order code> (orders/index.html brings it here): the
// code travels only in the fragment, which the browser never sends to a server, and the
// order opens once the customer has signed in (the API decides whether it is theirs).

const FRAGMENT_CODE = /^[0-9A-Za-z][0-9A-Za-z -]{14,22}[0-9A-Za-z]$/;

function codeInFragment() {
  let value = "";
  try {
    value = decodeURIComponent(location.hash.slice(1)).trim();
  } catch {
    return null; // malformed %-escapes: not a code
  }
  return FRAGMENT_CODE.test(value) ? value : null;
}

let wantedCode = codeInFragment();

async function openWantedOrder() {
  const code = wantedCode;
  wantedCode = null;
  if (!code) return;
  // Out of the address bar (and so out of a bookmark or a shared screen) once it is used.
  history.replaceState(null, "", location.pathname + location.search);
  await openOrder(code);
}

function showLogin() {
  $("#account").hidden = true;
  $("#orders").hidden = true;
  $("#order").hidden = true;
  $("#login-form").hidden = false;
  if (wantedCode) showNotice("Log in to see your order.");
}

async function showApp() {
  $("#login-form").hidden = true;
  $("#account").hidden = false;
  $("#who").textContent = session.user ? `${session.user.name} <${session.user.email}>` : "";
  $("#orders").hidden = false;
  $("#order-list").replaceChildren();
  ordersCursor = null;
  await loadOrders();
  await openWantedOrder();
}

function endSession() {
  session = null;
  sessionStorage.removeItem(REFRESH_KEY);
  closeOrder();
  showLogin();
}

async function login(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button");
  button.disabled = true;
  await action(async () => {
    const data = await graphql(
      LOGIN,
      { email: form.email.value, password: form.password.value },
      { auth: false },
    );
    keepTokens(payloadOf(data, "login"));
    form.reset();
    await showApp();
  });
  button.disabled = false;
}

async function logout() {
  await action(async () => {
    try {
      payloadOf(await graphql(LOGOUT), "logout");
    } finally {
      endSession(); // forget the tokens even if the API could not be told
    }
    showNotice("Logged out.");
  });
}

async function loadOrders() {
  const data = await graphql(MY_ORDERS, { first: PAGE_SIZE, after: ordersCursor });
  const { edges, pageInfo } = data.myOrders;
  for (const { node } of edges) {
    $("#order-list").append(
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "order-link",
            dataset: { code: node.code, status: node.status },
            onclick: () => action(() => openOrder(node.code)),
          },
          h("span", { class: "code" }, node.code),
          h("span", { class: `status status-${node.status}` }, words(node.status)),
          h("span", { class: "placed" }, day(node.placedAt)),
          h("span", { class: "total" }, money(node.total)),
        ),
      ),
    );
  }
  ordersCursor = pageInfo.endCursor;
  $("#more").hidden = !pageInfo.hasNextPage;
}

function closeOrder() {
  follower?.stop();
  follower = null;
  current = null;
  $("#order").hidden = true;
  $("#order-detail").replaceChildren();
  $("#return-panel").replaceChildren();
  $("#share-panel").replaceChildren();
  $("#updates").replaceChildren();
  setLive("off", "off");
}

function setLive(state, label) {
  const badge = $("#live-status");
  badge.dataset.state = state;
  badge.textContent = label;
}

let opening = 0; // the latest click wins when orders are clicked in quick succession

async function openOrder(code) {
  const ticket = ++opening;
  const data = await graphql(ORDER, { code });
  if (ticket !== opening) return;
  closeOrder();
  current = { code, eventKeys: null, returnOffered: false, share: null };
  $("#order").hidden = false;
  for (const button of document.querySelectorAll(".order-link")) {
    button.classList.toggle("selected", button.dataset.code === code);
  }
  renderOrder(data.order);
  renderShare(code);
  follower = new OrderFollower(code, {
    onState: setLive,
    onUpdate: (update) => {
      if (current?.code !== code) return;
      $("#updates").prepend(
        h(
          "li",
          { dataset: { type: update.type } },
          h("time", { datetime: update.occurredAt }, when(update.occurredAt)),
          " ",
          h("span", { class: "said" }, describeUpdate(update, current.eventKeys)),
        ),
      );
      renderOrder(update.order);
    },
  }).start();
}

/** A live update in words; `known`: the events the page showed before it. */
function describeUpdate(update, known) {
  const { order } = update;
  switch (update.type) {
    case "TRACKING_EVENT": {
      const newestFirst = (a, b) => Date.parse(b.e.occurredAt) - Date.parse(a.e.occurredAt);
      const all = order.shipments
        .flatMap((s) => s.events.map((e, index) => ({ s, e, index })))
        .sort(newestFirst);
      // the event that arrived (an old one too: history), else the newest there is
      const fresh = all.filter(({ s, e }) => !known?.has(eventKey(s, e)));
      const said = fresh[0] ?? all[0];
      if (!said) return "Tracking updated";
      const { s, e, index } = said;
      return eventSentence(e, index === 0 ? s.estimatedDelivery : null);
    }
    case "STATUS_CHANGED":
      return `Order ${words(order.status).toLowerCase()}`;
    case "RETURN_UPDATED": {
      const latest = order.returns.at(-1);
      return latest ? `Return ${latest.rma}: ${words(latest.status).toLowerCase()}` : "Return updated";
    }
    default:
      return "Order updated";
  }
}

const eventKey = (shipment, e) =>
  [shipment.trackingNumber, e.status, e.occurredAt, e.location, e.description].join("|");

function renderOrder(order) {
  const before = current.eventKeys;
  current.eventKeys = new Set(
    order.shipments.flatMap((s) => s.events.map((e) => eventKey(s, e))),
  );
  const isNew = (key) => before !== null && !before.has(key);

  // keep the list's status in step with what the live stream says
  const link = document.querySelector(`.order-link[data-code="${order.code}"]`);
  if (link) {
    link.dataset.status = order.status;
    const status = link.querySelector(".status");
    status.className = `status status-${order.status}`;
    status.textContent = words(order.status);
  }

  const totals = [
    ["Subtotal", order.subtotal],
    ["Shipping", order.shipping],
    ["VAT included", order.tax],
    ["Total", order.total],
  ];
  if (order.refunded.amount > 0) totals.push(["Refunded", order.refunded]);

  $("#order-detail").replaceChildren(
    h(
      "h2",
      {},
      "Order ",
      h("span", { id: "order-code" }, order.code),
      " ",
      h(
        "span",
        {
          id: "order-status",
          class: `status status-${order.status}`,
          dataset: { status: order.status },
        },
        words(order.status),
      ),
    ),
    h(
      "p",
      { class: "meta" },
      `Placed ${when(order.placedAt)} · estimated delivery ${day(order.estimatedDelivery)}`,
    ),
    h(
      "div",
      { class: "facts" },
      h(
        "section",
        { id: "shipping-address" },
        h("h3", {}, "Shipping address"),
        h(
          "address",
          {},
          [
            order.shippingAddress.name,
            order.shippingAddress.line1,
            order.shippingAddress.line2,
            `${order.shippingAddress.postalCode} ${order.shippingAddress.city}`.trim(),
            order.shippingAddress.country,
          ]
            .filter(Boolean)
            .map((line) => h("span", { class: "line" }, line)),
        ),
      ),
      h(
        "section",
        { id: "payment" },
        h("h3", {}, "Payment"),
        h(
          "p",
          {},
          h("span", { class: "brand" }, order.payment.brand),
          " ending in ",
          h("span", { class: "last4" }, order.payment.last4),
        ),
      ),
    ),
    h(
      "table",
      { id: "lines" },
      h(
        "thead",
        {},
        h("tr", {}, ["Item", "Qty", "Price", "Total"].map((title) => h("th", {}, title))),
      ),
      h(
        "tbody",
        {},
        order.lines.map((line) =>
          h(
            "tr",
            { dataset: { sku: line.sku } },
            h("td", {}, line.name, h("small", {}, ` ${line.sku}`)),
            h("td", {}, line.quantity),
            h("td", {}, money(line.unitPrice)),
            h("td", {}, money(line.lineTotal)),
          ),
        ),
      ),
      h(
        "tfoot",
        { id: "totals" },
        totals.map(([label, value]) =>
          h("tr", {}, h("th", { colspan: 3 }, label), h("td", {}, money(value))),
        ),
      ),
    ),
    h("h3", {}, "Shipments"),
    order.shipments.length === 0
      ? h("p", { class: "empty" }, "Not shipped yet.")
      : h(
          "div",
          { id: "shipments" },
          order.shipments.map((s) =>
            h(
              "article",
              {
                class: "shipment",
                dataset: { trackingNumber: s.trackingNumber, status: s.status },
              },
              h(
                "h4",
                {},
                `${s.carrier} ${s.trackingNumber} `,
                h("span", { class: `status status-${s.status}` }, words(s.status)),
              ),
              h(
                "p",
                { class: "meta" },
                `Shipped ${when(s.shippedAt)}`,
                s.deliveredAt
                  ? ` · delivered ${when(s.deliveredAt)}`
                  : ` · estimated ${day(s.estimatedDelivery)}`,
              ),
              h(
                "ol",
                { class: "events" },
                s.events.map((e, index) =>
                  h(
                    "li",
                    {
                      class: isNew(eventKey(s, e)) ? "event new" : "event",
                      dataset: { status: e.status },
                    },
                    h("time", { datetime: e.occurredAt }, when(e.occurredAt)),
                    " ",
                    h("strong", {}, eventSentence(e, index === 0 ? s.estimatedDelivery : null)),
                    e.location ? ` · ${e.location}` : "",
                    e.description ? ` · ${e.description}` : "",
                  ),
                ),
              ),
            ),
          ),
        ),
    order.returns.length === 0
      ? ""
      : h(
          "section",
          {},
          h("h3", {}, "Returns"),
          h(
            "ul",
            { id: "returns" },
            order.returns.map((r) =>
              h("li", { dataset: { rma: r.rma } }, `RMA ${r.rma} · ${words(r.status)}`),
            ),
          ),
        ),
  );

  // The return button appears once a parcel is delivered (live, too); the API decides what
  // may actually be returned.
  const panel = $("#return-panel");
  const delivered = order.shipments.some((s) => s.status === "DELIVERED");
  if (delivered && !current.returnOffered) {
    current.returnOffered = true;
    panel.replaceChildren(
      h(
        "button",
        {
          type: "button",
          id: "start-return",
          onclick: () => action(() => startReturn(order.code)),
        },
        "Start a return",
      ),
    );
  }
}

async function startReturn(code) {
  const data = await graphql(RETURN_ELIGIBILITY, { code });
  const eligibility = data.returnEligibility;
  const panel = $("#return-panel");
  const start = panel.querySelector("#start-return");
  if (!eligibility.canReturn) {
    panel.replaceChildren(
      start,
      h(
        "ul",
        { id: "not-returnable" },
        eligibility.lines.map((line) =>
          h(
            "li",
            { dataset: { reason: line.reason ?? "" } },
            `${line.name}: ${words(line.reason ?? "NONE")}`,
          ),
        ),
      ),
    );
    return;
  }
  const returnable = eligibility.lines.filter((line) => line.returnableQuantity > 0);
  const form = h(
    "form",
    { id: "return-form" },
    h("h3", {}, `Return items (within ${eligibility.windowDays} days of delivery)`),
    returnable.map((line) =>
      h(
        "label",
        { class: "return-line" },
        `${line.name} (up to ${line.returnableQuantity}, until ${day(line.returnableUntil)}) `,
        h("input", {
          type: "number",
          name: "quantity",
          min: 0,
          max: line.returnableQuantity,
          value: 1,
          dataset: { sku: line.sku },
        }),
      ),
    ),
    h(
      "label",
      {},
      "Reason ",
      h(
        "select",
        { name: "reason" },
        RETURN_REASONS.map((reason) => h("option", { value: reason }, words(reason))),
      ),
    ),
    h("label", {}, "Comment ", h("textarea", { name: "comment", rows: 2 })),
    h("button", { type: "submit" }, "Request return"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    action(() => requestReturn(code, form));
  });
  panel.replaceChildren(form);
}

async function requestReturn(code, form) {
  const lines = [...form.querySelectorAll("input[name=quantity]")]
    .map((input) => ({ sku: input.dataset.sku, quantity: Number(input.value) }))
    .filter((line) => line.quantity > 0);
  const data = await graphql(REQUEST_RETURN, {
    code,
    lines,
    reason: form.reason.value,
    comment: form.comment.value || null,
  });
  const { returnRequest } = payloadOf(data, "requestReturn");
  $("#return-panel").replaceChildren(
    h(
      "p",
      { id: "return-result" },
      "Return requested. Your RMA code: ",
      h("strong", { id: "rma" }, returnRequest.rma),
      ` (${words(returnRequest.status)}). Write it on the parcel.`,
    ),
  );
  if (current?.code === code) renderOrder((await graphql(ORDER, { code })).order);
}

// -- share tracking -----------------------------------------------------------------------
// The link is the public tracking page with the token in the fragment (track/#<token>): a
// browser never sends a fragment, so no web server's log holds it. The token is shown once,
// at creation: this page keeps it only while the order stays open.

function trackingUrl(token) {
  const url = new URL("track/", new URL(".", location.href));
  const api = new URLSearchParams(location.search).get("api");
  if (api) url.searchParams.set("api", api);
  url.hash = token;
  return url.href;
}

function renderShare(code) {
  const panel = $("#share-panel");
  const share = current?.code === code ? current.share : null;
  const create = h(
    "button",
    { type: "button", id: "share-create", onclick: () => action(() => createShare(code)) },
    share ? "Share again" : "Share tracking",
  );
  const title = h("h3", {}, "Share tracking");
  if (!share) {
    panel.replaceChildren(
      title,
      h(
        "p",
        { class: "hint" },
        "A link anyone can open to follow the parcels: carrier, status and towns. " +
          "No items, address, payment or order code.",
      ),
      create,
    );
    return;
  }
  if (share.revoked) {
    panel.replaceChildren(
      title,
      h("p", { id: "share-revoked", class: "notice" }, "Link revoked: it no longer works."),
      create,
    );
    return;
  }
  panel.replaceChildren(
    title,
    h(
      "label",
      { class: "share-link" },
      "Tracking link ",
      h("input", { id: "share-url", type: "url", readonly: true, value: share.url }),
    ),
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", id: "share-copy", onclick: () => copyShare() }, "Copy link"),
      h("a", { id: "share-open", href: share.url, target: "_blank", rel: "noopener" }, "Open"),
      h(
        "button",
        {
          type: "button",
          id: "share-revoke",
          class: "secondary",
          onclick: () => action(() => revokeShare(code)),
        },
        "Revoke",
      ),
    ),
    h("p", { class: "meta" }, `Works until ${when(share.expiresAt)}, unless you revoke it.`),
    h("p", { id: "share-copied", role: "status" }),
  );
}

async function createShare(code) {
  const data = await graphql(CREATE_TRACKING_LINK, { code, expiresInHours: SHARE_HOURS });
  const { link } = payloadOf(data, "createTrackingLink");
  if (current?.code !== code) return;
  current.share = { token: link.token, url: trackingUrl(link.token), expiresAt: link.expiresAt };
  renderShare(code);
}

async function copyShare() {
  const input = $("#share-url");
  const said = $("#share-copied");
  try {
    await navigator.clipboard.writeText(input.value);
    said.textContent = "Copied to the clipboard.";
    said.dataset.copied = "yes";
  } catch {
    // No clipboard access (permission refused, an old browser): select it for Ctrl+C.
    input.focus();
    input.select();
    said.textContent = "Press Ctrl+C (⌘C) to copy the selected link.";
    said.dataset.copied = "no";
  }
}

async function revokeShare(code) {
  const share = current?.share;
  if (!share) return;
  payloadOf(await graphql(REVOKE_TRACKING_LINK, { token: share.token }), "revokeTrackingLink");
  if (current?.code !== code) return;
  current.share = { ...share, revoked: true };
  renderShare(code);
}

// -- the public tracking page (track/#<token>): no login, nothing personal ---------------

async function showTracking() {
  const area = $("#tracking");
  let token = "";
  try {
    token = decodeURIComponent(location.hash.slice(1)).trim();
  } catch {
    token = "";
  }
  const gone = (text) => area.replaceChildren(h("p", { id: "tracking-gone", class: "empty" }, text));
  if (!token) {
    gone("This tracking link is incomplete: copy the whole link.");
    return;
  }
  let view = null;
  try {
    view = (await graphql(TRACKING_LINK, { token }, { auth: false })).trackingLink;
  } catch (error) {
    // unknown, expired and revoked links all give ORDER_NOT_FOUND (one answer for all)
    if (!(error instanceof ApiError && error.codes.includes("ORDER_NOT_FOUND"))) throw error;
  }
  if (!view) {
    gone("This tracking link does not work: it has expired or was revoked.");
    return;
  }
  area.replaceChildren(
    h(
      "p",
      { class: "meta", id: "tracking-estimate" },
      view.estimatedDelivery ? `Expected ${day(view.estimatedDelivery)}` : "",
    ),
    h(
      "div",
      { id: "tracking-shipments" },
      view.shipments.length === 0 ? h("p", { class: "empty" }, "Not shipped yet.") : null,
      view.shipments.map((s) =>
          h(
            "article",
            { class: "shipment public-shipment", dataset: { status: s.status } },
            h(
              "h3",
              {},
              h("span", { class: "carrier" }, s.carrier),
              " ",
              h("span", { class: `status status-${s.status}` }, words(s.status)),
            ),
            h(
              "ol",
              { class: "events" },
              s.events.map((e, index) =>
                h(
                  "li",
                  { class: "event", dataset: { status: e.status } },
                  h("time", { datetime: e.occurredAt }, when(e.occurredAt)),
                  " ",
                  h("strong", {}, eventSentence(e, index === 0 ? s.estimatedDelivery : null)),
                ),
              ),
            ),
          ),
        ),
    ),
  );
}

// -- start --------------------------------------------------------------------------------

async function main() {
  if (document.body.dataset.page === "tracking") {
    await action(showTracking);
    window.addEventListener("hashchange", () => action(showTracking));
    return;
  }
  $("#api-url").textContent = API;
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  $("#more").addEventListener("click", () => action(loadOrders));
  window.addEventListener("hashchange", () => {
    wantedCode = codeInFragment();
    if (session && wantedCode) action(openWantedOrder);
    else if (wantedCode) showLogin();
  });
  if (sessionStorage.getItem(REFRESH_KEY)) {
    // A reload: the access token is gone with the page, the refresh token is not.
    await action(async () => {
      await refreshTokens();
      await showApp();
    });
    if (session) return;
  }
  showLogin();
}

main();

// An order as support sees it (supportOrder): status, lines, address, payment brand and
// last 4, parcels with their tracking events, returns, and the timeline.
import { h, money, table, when } from "./dom.js";

// The fields it reads are selected by SupportOrder (ORDER_FIELDS in support.js).

export function addressBlock(a) {
  return h(
    "address",
    {},
    [a.name, a.line1, a.line2, `${a.postalCode} ${a.city}`, a.country]
      .filter((line) => line && line.trim())
      .map((line) => h("span", { class: "line" }, line)),
  );
}

export function orderView(order, customer) {
  return h(
    "article",
    { class: "order", "data-code": order.code },
    h(
      "header",
      { class: "order-head" },
      h("h2", {}, h("span", { class: "code" }, order.code)),
      h("span", { class: `status status-${order.status}` }, order.status),
    ),
    h(
      "dl",
      { class: "facts" },
      customer ? [h("dt", {}, "Customer"), h("dd", { class: "customer" }, `${customer.name} <${customer.email}>`)] : [],
      h("dt", {}, "Placed"), h("dd", {}, when(order.placedAt)),
      h("dt", {}, "Expected"), h("dd", {}, order.estimatedDelivery),
      order.deliveredAt ? [h("dt", {}, "Delivered"), h("dd", {}, when(order.deliveredAt))] : [],
      h("dt", {}, "Total"), h("dd", {}, money(order.total)),
      order.refunded && order.refunded.amount ? [h("dt", {}, "Refunded"), h("dd", {}, money(order.refunded))] : [],
      h("dt", {}, "Payment"), h("dd", { class: "payment" }, `${order.payment.brand} •••• ${order.payment.last4}`),
    ),
    h("section", {}, h("h3", {}, "Ship to"), addressBlock(order.shippingAddress)),
    h(
      "section",
      {},
      h("h3", {}, "Lines"),
      table(
        ["SKU", "Item", "Qty", "Price", "Line total"],
        order.lines.map((l) => h("tr", {}, h("td", {}, l.sku), h("td", {}, l.name), h("td", { class: "num" }, l.quantity), h("td", { class: "num" }, money(l.unitPrice)), h("td", { class: "num" }, money(l.lineTotal)))),
        { class: "lines" },
      ),
    ),
    h(
      "section",
      { class: "parcels" },
      h("h3", {}, `Parcels (${order.shipments.length})`),
      order.shipments.length === 0 ? h("p", { class: "muted" }, "Nothing shipped yet.") : null,
      order.shipments.map((s) =>
        h(
          "div",
          { class: "parcel" },
          h("p", {}, h("strong", {}, `${s.carrier} ${s.trackingNumber}`), ` · ${s.status} · shipped ${when(s.shippedAt)}`),
          h("p", { class: "muted" }, s.lines.map((l) => `${l.quantity} × ${l.sku}`).join(", ")),
          h("ol", { class: "events" }, s.events.map((e) => h("li", {}, `${when(e.occurredAt)} · ${e.status}${e.location ? ` · ${e.location}` : ""}${e.description ? ` · ${e.description}` : ""}`))),
        ),
      ),
    ),
    h(
      "section",
      { class: "returns" },
      h("h3", {}, `Returns (${order.returns.length})`),
      order.returns.length === 0 ? h("p", { class: "muted" }, "No returns.") : null,
      order.returns.map((r) =>
        h(
          "p",
          { class: "return", "data-rma": r.rma },
          h("strong", {}, r.rma),
          ` · ${r.status} · ${r.reason} · asked ${when(r.requestedAt)} · `,
          r.lines.map((l) => `${l.quantity} × ${l.sku}`).join(", "),
          r.refund ? ` · refunded ${money(r.refund)}` : "",
        ),
      ),
    ),
    h(
      "section",
      { class: "timeline" },
      h("h3", {}, "Timeline"),
      h("ol", {}, order.timeline.map((t) => h("li", { "data-kind": t.kind }, `${when(t.at)} · ${t.description}`))),
    ),
  );
}

// Support desk (SUPPORT, ADMIN): find an order by the code a customer reads out (any case,
// spaces, O for 0: the API normalises it) or by the customer's email, always with the
// ticket as the reason (both are audited); start a return on the customer's behalf.
import { gql } from "./api.js";
import { clear, field, h, money, showUserErrors, table, when } from "./dom.js";
import { orderView } from "./order-view.js";

// What orderView (order-view.js) shows. Here, beside the document that reads it: the
// allow-list export resolves only constants of the document's own file.
const ORDER_FIELDS = `
  code status placedAt estimatedDelivery deliveredAt
  total { amount currency } refunded { amount currency }
  shippingAddress { name line1 line2 city postalCode country }
  payment { brand last4 }
  lines { sku name quantity unitPrice { amount currency } lineTotal { amount currency } }
  shipments {
    carrier trackingNumber status shippedAt
    lines { sku quantity }
    events { status location description occurredAt }
  }
  returns {
    rma status reason requestedAt
    lines { sku name quantity receivedQuantity }
    refund { amount currency }
  }
  timeline { kind at description }
`;

const SUPPORT_ORDER = `query SupportOrder($code: String!, $reason: String!) {
  supportOrder(code: $code, reason: $reason) {
    customer { email name }
    order { ${ORDER_FIELDS} }
  }
}`;

const SUPPORT_SEARCH = `query SupportSearch($email: String!, $reason: String!) {
  supportSearch(customerEmail: $email, reason: $reason, first: 20) {
    code status placedAt itemCount total { amount currency }
  }
}`;

const REQUEST_RETURN = `mutation StaffRequestReturn($code: String!, $lines: [ReturnLineInput!]!, $reason: ReturnReason!, $comment: String, $supportReason: String) {
  requestReturn(code: $code, lines: $lines, reason: $reason, comment: $comment, supportReason: $supportReason) {
    returnRequest { rma status }
    userErrors { field message code }
  }
}`;

const RETURN_REASONS = ["DAMAGED", "DEFECTIVE", "WRONG_ITEM", "NOT_AS_DESCRIBED", "NO_LONGER_NEEDED", "OTHER"];

export function render(main, ctx) {
  const result = h("div", { id: "support-result" });
  const reasonInput = { name: "reason", required: true, placeholder: "Ticket number, e.g. T-1234", autocomplete: "off" };

  const byCode = h(
    "form",
    { class: "card", "aria-label": "Find by order code" },
    h("h2", {}, "Find an order by its code"),
    field("Order code (as the customer reads it)", { name: "code", required: true, autocomplete: "off", spellcheck: "false", autocapitalize: "characters", placeholder: "e.g. 7k3m q9xp …" }),
    field("Reason (ticket)", { ...reasonInput, id: "code-reason" }),
    h("button", { type: "submit" }, "Look up"),
  );
  byCode.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(byCode);
    lookup(String(data.get("code")), String(data.get("reason")).trim());
  });

  const byEmail = h(
    "form",
    { class: "card", "aria-label": "Find by customer email" },
    h("h2", {}, "Customer lost the code? Find by email"),
    field("Customer email", { name: "customerEmail", type: "email", required: true, autocomplete: "off" }),
    field("Reason (ticket)", { ...reasonInput, id: "email-reason" }),
    h("button", { type: "submit" }, "Search"),
  );
  byEmail.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(byEmail);
    const reason = String(data.get("reason")).trim();
    ctx.quiet();
    clear(result, h("p", { class: "muted" }, "Searching…"));
    try {
      const found = await gql(SUPPORT_SEARCH, { email: String(data.get("customerEmail")).trim(), reason });
      const orders = found.supportSearch;
      clear(
        result,
        h("h2", {}, "Recent orders"),
        orders.length === 0
          ? h("p", { class: "empty" }, "No orders found for this email. Check the spelling with the customer.")
          : table(
              ["Code", "Status", "Placed", "Items", "Total", ""],
              orders.map((o) =>
                h(
                  "tr",
                  { "data-code": o.code },
                  h("td", { class: "code" }, o.code), h("td", {}, o.status), h("td", {}, when(o.placedAt)),
                  h("td", { class: "num" }, o.itemCount), h("td", { class: "num" }, money(o.total)),
                  h("td", {}, h("button", { type: "button", onclick: () => lookup(o.code, reason) }, "Open")),
                ),
              ),
              { class: "search-results" },
            ),
      );
    } catch (error) {
      clear(result);
      ctx.fail(error);
    }
  });

  async function lookup(code, reason) {
    ctx.quiet();
    clear(result, h("p", { class: "muted" }, "Looking up…"));
    try {
      const data = await gql(SUPPORT_ORDER, { code, reason });
      if (!data.supportOrder) {
        clear(result);
        return ctx.fail({ code: "ORDER_NOT_FOUND" });
      }
      const { order, customer } = data.supportOrder;
      clear(result, orderView(order, customer), returnForm(order, reason));
    } catch (error) {
      clear(result);
      ctx.fail(error);
    }
  }

  function returnForm(order, reason) {
    const form = h(
      "form",
      { class: "card start-return", "aria-label": "Start a return" },
      h("h3", {}, "Start a return for the customer"),
      h(
        "fieldset",
        { name: "lines" },
        h("legend", {}, "Units to return"),
        order.lines.map((l) => field(`${l.sku} · ${l.name} (of ${l.quantity})`, { name: `qty:${l.sku}`, type: "number", min: "0", max: String(l.quantity), value: "0" })),
      ),
      h("label", { class: "field" }, h("span", {}, "Return reason"), h("select", { name: "reason" }, RETURN_REASONS.map((r) => h("option", { value: r }, r)))),
      field("Comment (optional)", { name: "comment", autocomplete: "off" }),
      field("Ticket", { name: "supportReason", value: reason, required: true }),
      h("button", { type: "submit" }, "Start return"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const lines = order.lines
        .map((l) => ({ sku: l.sku, quantity: Number(data.get(`qty:${l.sku}`) || 0) }))
        .filter((l) => l.quantity > 0);
      try {
        const answer = await gql(REQUEST_RETURN, {
          code: order.code,
          lines,
          reason: String(data.get("reason")),
          comment: String(data.get("comment") || "") || null,
          supportReason: String(data.get("supportReason")).trim(),
        });
        const payload = answer.requestReturn;
        if (showUserErrors(form, payload.userErrors)) {
          await lookup(order.code, reason); // the order again, with the new return
          ctx.notice(`Return ${payload.returnRequest.rma} started (${payload.returnRequest.status}). The customer gets an email.`);
        }
      } catch (error) {
        ctx.fail(error);
      }
    });
    return form;
  }

  clear(main, h("div", { class: "columns" }, byCode, byEmail), result);
  byCode.querySelector("input").focus();
}

// Every document this screen sends (validated against schema.graphql by the tests)
export const DOCUMENTS = { SUPPORT_ORDER, SUPPORT_SEARCH, REQUEST_RETURN };

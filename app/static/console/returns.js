// Returns desk: the queue of returns waiting for approval or receipt (oldest first),
// approve/reject with a reason (SUPPORT, ADMIN), receive by scanning the RMA and counting
// the units (WAREHOUSE, ADMIN), refund (ADMIN). Buttons a role would be refused are left
// out; the API refuses them anyway.
import { gql } from "./api.js";
import { clear, field, h, money, showUserErrors, table, when } from "./dom.js";

const STATUSES = ["REQUESTED", "APPROVED", "RECEIVED", "REFUNDED", "REJECTED"];

const QUEUE = `query ReturnsQueue($statuses: [ReturnStatus!]) {
  returnsQueue(statuses: $statuses, first: 50) {
    edges { node { rma orderCode status reason requestedAt lines { sku quantity } } }
  }
}`;

const RETURN_FIELDS = `rma orderCode status reason comment rejectionReason
  requestedAt approvedAt rejectedAt receivedAt refundedAt
  lines { sku name quantity receivedQuantity unitPrice { amount currency } }
  refund { amount currency }`;

const GET = `query ReturnRequest($rma: String!) { returnRequest(rma: $rma) { ${RETURN_FIELDS} } }`;
const PAYLOAD = `returnRequest { ${RETURN_FIELDS} } userErrors { field message code }`;
const APPROVE = `mutation ApproveReturn($rma: String!) { approveReturn(rma: $rma) { ${PAYLOAD} } }`;
const REJECT = `mutation RejectReturn($rma: String!, $reason: String!) { rejectReturn(rma: $rma, reason: $reason) { ${PAYLOAD} } }`;
const RECEIVE = `mutation ReceiveReturn($rma: String!, $lines: [ReturnLineInput!]!) { receiveReturn(rma: $rma, lines: $lines) { ${PAYLOAD} } }`;
const REFUND = `mutation RefundReturn($rma: String!) { refundReturn(rma: $rma) { ${PAYLOAD} } }`;

export function render(main, ctx) {
  const role = ctx.user.role;
  const decides = role === "SUPPORT" || role === "ADMIN";
  const receives = role === "WAREHOUSE" || role === "ADMIN";
  const refunds = role === "ADMIN";

  const queue = h("section", { class: "card queue", "aria-label": "Returns queue" });
  const panel = h("section", { id: "return-panel" });
  const filters = h(
    "fieldset",
    { class: "filters" },
    h("legend", {}, "Show"),
    STATUSES.map((s) => h("label", {}, h("input", { type: "checkbox", name: "status", value: s, checked: s === "REQUESTED" || s === "APPROVED", onchange: loadQueue }), ` ${s}`)),
  );
  const list = h("div", {});

  const scanInput = h("input", { name: "rma", autocomplete: "off", spellcheck: "false", placeholder: "Scan or type the RMA", "aria-label": "Scan RMA" });
  const scan = h("form", { class: "card scan", "aria-label": "Open a return" }, h("h2", {}, "Scan a return label"), h("label", { class: "field" }, h("span", {}, "RMA"), scanInput), h("button", { type: "submit" }, "Open"));
  scan.addEventListener("submit", (event) => {
    event.preventDefault();
    const rma = scanInput.value.trim();
    scanInput.value = "";
    if (rma) open(rma);
  });

  clear(queue, h("h2", {}, "Returns waiting"), filters, list);
  // The queue has seven columns: it gets the width of the page beside the scan box, and the
  // return opened from it shows below (in a side column the queue's buttons were cut off).
  clear(main, h("div", { class: "desk" }, h("div", { class: "desk-top" }, scan, queue), panel));
  loadQueue();
  scanInput.focus();

  async function loadQueue() {
    const statuses = [...filters.querySelectorAll("input:checked")].map((el) => el.value);
    clear(list, h("p", { class: "muted" }, "Loading…"));
    try {
      const data = await gql(QUEUE, { statuses: statuses.length ? statuses : null });
      const returns = data.returnsQueue.edges.map((e) => e.node);
      clear(
        list,
        returns.length === 0
          ? h("p", { class: "empty" }, "No returns waiting.")
          : table(
              ["RMA", "Order", "Status", "Reason", "Asked", "Units", ""],
              returns.map((r) =>
                h(
                  "tr",
                  { "data-rma": r.rma },
                  h("td", { class: "code" }, r.rma), h("td", { class: "code" }, r.orderCode), h("td", {}, r.status),
                  h("td", {}, r.reason), h("td", {}, when(r.requestedAt)),
                  h("td", { class: "num" }, r.lines.reduce((n, l) => n + l.quantity, 0)),
                  h("td", {}, h("button", { type: "button", onclick: () => open(r.rma) }, "Open")),
                ),
              ),
              { class: "returns-queue" },
            ),
      );
    } catch (error) {
      clear(list);
      ctx.fail(error);
    }
  }

  async function open(rma) {
    ctx.quiet();
    try {
      const data = await gql(GET, { rma });
      if (!data.returnRequest) return ctx.fail({ code: "ORDER_NOT_FOUND" });
      show(data.returnRequest);
    } catch (error) {
      ctx.fail(error);
    }
  }

  async function act(form, query, variables, key, done) {
    try {
      const data = await gql(query, variables);
      const payload = data[key];
      if (!showUserErrors(form, payload.userErrors)) return;
      ctx.notice(done);
      show(payload.returnRequest);
      loadQueue();
    } catch (error) {
      ctx.fail(error);
    }
  }

  function show(r) {
    requestAnimationFrame(() => panel.scrollIntoView({ block: "start" }));
    const actions = [];
    if (decides && r.status === "REQUESTED") {
      const form = h("form", { class: "approve", "aria-label": "Approve" }, h("button", { type: "submit" }, "Approve"));
      form.addEventListener("submit", (e) => { e.preventDefault(); act(form, APPROVE, { rma: r.rma }, "approveReturn", `Return ${r.rma} approved.`); });
      actions.push(form);
    }
    if (decides && (r.status === "REQUESTED" || r.status === "APPROVED")) {
      const form = h("form", { class: "reject", "aria-label": "Reject" }, field("Reason for rejecting (the customer sees it)", { name: "reason", required: true, autocomplete: "off" }), h("button", { type: "submit", class: "danger" }, "Reject"));
      form.addEventListener("submit", (e) => { e.preventDefault(); act(form, REJECT, { rma: r.rma, reason: String(new FormData(form).get("reason")).trim() }, "rejectReturn", `Return ${r.rma} rejected.`); });
      actions.push(form);
    }
    if (receives && (r.status === "APPROVED" || r.status === "REQUESTED")) actions.push(receiveForm(r));
    if (refunds && r.status === "RECEIVED") {
      const form = h("form", { class: "refund", "aria-label": "Refund" }, h("button", { type: "submit" }, "Refund"));
      form.addEventListener("submit", (e) => { e.preventDefault(); act(form, REFUND, { rma: r.rma }, "refundReturn", `Return ${r.rma} refunded.`); });
      actions.push(form);
    }
    clear(
      panel,
      h(
        "article",
        { class: "card return-detail", "data-rma": r.rma, "data-status": r.status },
        h("header", { class: "order-head" }, h("h2", {}, "Return ", h("span", { class: "code" }, r.rma)), h("span", { class: `status status-${r.status}` }, r.status)),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Order"), h("dd", { class: "code" }, r.orderCode),
          h("dt", {}, "Reason"), h("dd", {}, r.reason),
          r.comment ? [h("dt", {}, "Comment"), h("dd", {}, r.comment)] : [],
          r.rejectionReason ? [h("dt", {}, "Rejected because"), h("dd", {}, r.rejectionReason)] : [],
          h("dt", {}, "Asked"), h("dd", {}, when(r.requestedAt)),
          r.receivedAt ? [h("dt", {}, "Received"), h("dd", {}, when(r.receivedAt))] : [],
          r.refund ? [h("dt", {}, "Refunded"), h("dd", { class: "refund-amount" }, money(r.refund))] : [],
        ),
        table(
          ["SKU", "Item", "Asked", "Received", "Price"],
          r.lines.map((l) => h("tr", {}, h("td", {}, l.sku), h("td", {}, l.name), h("td", { class: "num" }, l.quantity), h("td", { class: "num" }, l.receivedQuantity ?? "–"), h("td", { class: "num" }, money(l.unitPrice)))),
        ),
        actions.length ? h("div", { class: "actions" }, actions) : h("p", { class: "muted" }, "Nothing for your role to do here."),
      ),
    );
  }

  function receiveForm(r) {
    const counts = new Map(r.lines.map((l) => [l.sku, 0]));
    const inputs = new Map();
    const note = h("p", { class: "scan-status", "aria-live": "assertive" });
    const itemInput = h("input", { name: "item", autocomplete: "off", spellcheck: "false", placeholder: "Scan each unit", "aria-label": "Scan returned item" });
    const form = h(
      "form",
      { class: "receive", "aria-label": "Receive" },
      h("h3", {}, "Receive: count the units in the parcel"),
      h("label", { class: "field" }, h("span", {}, "Scan item"), itemInput),
      note,
      h(
        "fieldset",
        { name: "lines" },
        h("legend", {}, "Units received"),
        r.lines.map((l) => {
          const input = h("input", { name: `count:${l.sku}`, type: "number", min: "0", max: String(l.quantity), value: "0" });
          inputs.set(l.sku, input);
          return h("label", { class: "field" }, h("span", {}, `${l.sku} (asked ${l.quantity})`), input);
        }),
      ),
      h("button", { type: "submit", class: "do-receive" }, "Receive"),
    );
    itemInput.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault(); // a scan counts a unit; it does not send the form
      const sku = itemInput.value.trim().toUpperCase();
      itemInput.value = "";
      const line = r.lines.find((l) => l.sku.toUpperCase() === sku);
      if (!line) {
        clear(note, h("span", { class: "mismatch" }, `${sku} is not part of this return. Set it aside.`));
        return;
      }
      const input = inputs.get(line.sku);
      input.value = String(Number(input.value || 0) + 1);
      counts.set(line.sku, Number(input.value));
      clear(note, h("span", { class: "match" }, `✓ ${line.sku}: ${input.value} of ${line.quantity}`));
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const lines = r.lines.map((l) => ({ sku: l.sku, quantity: Number(inputs.get(l.sku).value || 0) }));
      act(form, RECEIVE, { rma: r.rma, lines }, "receiveReturn", `Return ${r.rma} received.`);
    });
    return form;
  }
}

// Every document this screen sends (validated against schema.graphql by the tests)
export const DOCUMENTS = { QUEUE, GET, APPROVE, REJECT, RECEIVE, REFUND };

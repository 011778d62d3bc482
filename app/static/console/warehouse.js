// Warehouse station (WAREHOUSE, ADMIN): the fulfilment queue, an order's pick list by bin,
// packing by scanning (one SKU per scan; a wrong one is shown and nothing is sent), split
// shipments, shipping with carrier and tracking number, and the printable packing slip.
import { gql } from "./api.js";
import { barcodeSvg } from "./code128.js";
import { clear, field, h, showUserErrors, table, when } from "./dom.js";
import { addressBlock } from "./order-view.js";

const QUEUE = `query FulfillmentQueue {
  fulfillmentQueue(first: 50) {
    edges { node { code status placedAt estimatedDelivery lines { sku quantity } } }
  }
}`;

const ORDER = `code status placedAt estimatedDelivery
  shippingAddress { name line1 line2 city postalCode country }
  lines { sku name binLocation quantity orderedQuantity packedQuantity shippedQuantity readyToShipQuantity }
  shipments { carrier trackingNumber status }`;

const PICK_LIST = `query PickList($code: String!) { pickList(code: $code) { ${ORDER} } }`;

const PACK = `mutation PackOrder($code: String!, $scannedSkus: [String!]!, $lines: [FulfillmentLineInput!]) {
  packOrder(code: $code, scannedSkus: $scannedSkus, lines: $lines) {
    order { ${ORDER} }
    missing { sku quantity }
    unexpected { sku quantity }
    userErrors { field message code }
  }
}`;

const SHIP = `mutation ShipOrder($code: String!, $carrier: String!, $trackingNumber: String!) {
  shipOrder(code: $code, carrier: $carrier, trackingNumber: $trackingNumber) {
    order { ${ORDER} }
    shipment { carrier trackingNumber }
    userErrors { field message code }
  }
}`;

const CARRIERS = ["DHL", "DPD", "UPS", "GLS", "Hermes", "FedEx"];

export function render(main, ctx) {
  const queue = h("section", { class: "card queue", "aria-label": "Fulfilment queue" });
  const panel = h("section", { id: "order-panel" });
  clear(main, h("div", { class: "station" }, queue, panel));
  loadQueue();

  async function loadQueue() {
    clear(queue, h("h2", {}, "Fulfilment queue"), h("p", { class: "muted" }, "Loading…"));
    try {
      const data = await gql(QUEUE);
      const orders = data.fulfillmentQueue.edges.map((e) => e.node);
      clear(
        queue,
        h("h2", {}, `Fulfilment queue (${orders.length})`),
        h("button", { type: "button", class: "secondary", onclick: loadQueue }, "Refresh"),
        orders.length === 0
          ? h("p", { class: "empty" }, "Nothing to pack. Well done.")
          : table(
              ["Code", "Status", "Placed (UTC)", "Units", ""],
              orders.map((o) =>
                h(
                  "tr",
                  { "data-code": o.code },
                  h("td", { class: "code" }, o.code), h("td", {}, o.status), h("td", {}, when(o.placedAt).replace(/ UTC$/, "")),
                  h("td", { class: "num" }, o.lines.reduce((n, l) => n + l.quantity, 0)),
                  h("td", {}, h("button", { type: "button", onclick: () => open(o.code) }, "Open")),
                ),
              ),
            ),
      );
    } catch (error) {
      clear(queue, h("h2", {}, "Fulfilment queue"));
      ctx.fail(error);
    }
  }

  async function open(code) {
    ctx.quiet();
    try {
      const data = await gql(PICK_LIST, { code });
      if (!data.pickList) return ctx.fail({ code: "ORDER_NOT_FOUND" });
      showOrder(data.pickList);
    } catch (error) {
      ctx.fail(error);
    }
  }

  function showOrder(order) {
    const lines = [...order.lines].sort((a, b) => a.binLocation.localeCompare(b.binLocation) || a.sku.localeCompare(b.sku));
    const tally = new Map(lines.map((l) => [l.sku, 0]));
    const scanned = [];
    const left = () => lines.reduce((n, l) => n + l.quantity, 0);
    const counted = () => scanned.length;

    const scanStatus = h("div", { class: "scan-status", "aria-live": "assertive" });
    const summary = h("p", { class: "tally-summary" });
    const tallyCells = new Map();
    const pickTable = table(
      ["Bin", "SKU", "Item", "To pack", "Scanned", "Packed, to ship", "Shipped"],
      lines.map((l) => {
        const cell = h("td", { class: "num scanned" }, "0");
        tallyCells.set(l.sku, cell);
        return h(
          "tr",
          { "data-sku": l.sku, class: l.quantity === 0 ? "done" : "" },
          h("td", { class: "bin" }, l.binLocation), h("td", { class: "sku" }, l.sku), h("td", {}, l.name),
          h("td", { class: "num to-pack" }, l.quantity), cell,
          h("td", { class: "num" }, l.readyToShipQuantity), h("td", { class: "num" }, l.shippedQuantity),
        );
      }),
      { class: "pick-list" },
    );

    const packAll = h("button", { type: "button", class: "pack-all", disabled: true }, "Pack all");
    const packSplit = h("button", { type: "button", class: "secondary pack-split", disabled: true }, "Pack scanned only (split shipment)");
    const reset = h("button", { type: "button", class: "secondary", onclick: () => { scanned.length = 0; for (const sku of tally.keys()) tally.set(sku, 0); clear(scanStatus); update(); } }, "Clear scans");
    const packForm = h("div", { class: "pack-actions" }, packAll, packSplit, reset);

    function update() {
      for (const [sku, n] of tally) {
        const line = lines.find((l) => l.sku === sku);
        const cell = tallyCells.get(sku);
        cell.textContent = String(n);
        cell.closest("tr").classList.toggle("complete", line.quantity > 0 && n === line.quantity);
      }
      summary.textContent = `Scanned ${counted()} of ${left()} units still to pack.`;
      packAll.disabled = !(left() > 0 && counted() === left());
      packSplit.disabled = !(counted() > 0 && counted() < left());
    }

    const scanInput = h("input", { name: "scan", autocomplete: "off", spellcheck: "false", placeholder: "Scan an item's barcode", "aria-label": "Scan SKU" });
    const scanForm = h("form", { class: "scan", "aria-label": "Scan items" }, h("label", { class: "field" }, h("span", {}, "Scan (one item per scan)"), scanInput));
    scanForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const sku = scanInput.value.trim().toUpperCase();
      scanInput.value = "";
      if (!sku) return;
      const line = lines.find((l) => l.sku.toUpperCase() === sku);
      if (!line) {
        mismatch(`Wrong item: ${sku} is not on this order. Put it back; nothing was recorded.`);
      } else if (tally.get(line.sku) >= line.quantity) {
        mismatch(line.quantity === 0
          ? `Too many: ${line.sku} is already packed. Put it back; nothing was recorded.`
          : `Too many: all ${line.quantity} × ${line.sku} are already scanned. Put this one back.`);
      } else {
        tally.set(line.sku, tally.get(line.sku) + 1);
        scanned.push(line.sku);
        clear(scanStatus, h("p", { class: "match" }, `✓ ${line.sku} · ${tally.get(line.sku)} of ${line.quantity}`));
      }
      update();
      scanInput.focus();
    });

    function mismatch(text) {
      clear(scanStatus, h("p", { class: "mismatch", role: "alert" }, text));
    }

    async function pack(split) {
      const chosen = split ? lines.filter((l) => tally.get(l.sku) > 0).map((l) => ({ sku: l.sku, quantity: tally.get(l.sku) })) : null;
      try {
        const data = await gql(PACK, { code: order.code, scannedSkus: [...scanned], lines: chosen });
        const payload = data.packOrder;
        if (!showUserErrors(packForm, payload.userErrors)) return;
        ctx.notice(`Packed ${order.code}${split ? " (split shipment)" : ""}. Ship it below.`);
        showOrder(payload.order);
      } catch (error) {
        ctx.fail(error);
      }
    }
    packAll.addEventListener("click", () => pack(false));
    packSplit.addEventListener("click", () => pack(true));

    const readyToShip = lines.some((l) => l.readyToShipQuantity > 0);
    const shipForm = h(
      "form",
      { class: "card ship", "aria-label": "Ship" },
      h("h3", {}, "Ship packed items"),
      h("label", { class: "field" }, h("span", {}, "Carrier"), h("select", { name: "carrier" }, CARRIERS.map((c) => h("option", { value: c }, c)))),
      field("Tracking number", { name: "trackingNumber", required: true, autocomplete: "off", spellcheck: "false" }),
      h("button", { type: "submit" }, "Ship"),
    );
    shipForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(shipForm);
      try {
        const answer = await gql(SHIP, { code: order.code, carrier: String(data.get("carrier")), trackingNumber: String(data.get("trackingNumber")).trim() });
        const payload = answer.shipOrder;
        if (!showUserErrors(shipForm, payload.userErrors)) return;
        ctx.notice(`Shipped ${order.code} with ${payload.shipment.carrier} ${payload.shipment.trackingNumber}.`);
        showOrder(payload.order);
        loadQueue();
      } catch (error) {
        ctx.fail(error);
      }
    });

    clear(
      panel,
      h(
        "article",
        { class: "card pick", "data-code": order.code },
        h("header", { class: "order-head" }, h("h2", {}, "Pick list ", h("span", { class: "code" }, order.code)), h("span", { class: `status status-${order.status}` }, order.status)),
        h("p", { class: "muted" }, `Expected delivery ${order.estimatedDelivery} · walk the bins top to bottom`),
        pickTable,
        left() > 0 ? [scanForm, scanStatus, summary, packForm] : h("p", { class: "muted" }, "Everything is packed."),
        readyToShip ? shipForm : null,
        h("button", { type: "button", class: "secondary print", onclick: () => window.print() }, "Print packing slip"),
      ),
      packingSlip(order, lines),
    );
    update();
    if (left() > 0) scanInput.focus();
  }
}

/** The packing slip: shown on paper only (print.css), with the code as text and as a
 * Code 128 barcode, the lines with their bins, and the address. */
function packingSlip(order, lines) {
  return h(
    "section",
    { class: "slip", "aria-label": "Packing slip" },
    h("h1", {}, "Packing slip"),
    h("div", { class: "slip-code" }, h("p", { class: "code" }, order.code), barcodeSvg(order.code)),
    h("h2", {}, "Ship to"),
    addressBlock(order.shippingAddress),
    table(
      ["Bin", "SKU", "Item", "Ordered", "Packed"],
      lines.map((l) => h("tr", {}, h("td", {}, l.binLocation), h("td", {}, l.sku), h("td", {}, l.name), h("td", { class: "num" }, l.orderedQuantity), h("td", { class: "num" }, l.packedQuantity))),
      { class: "slip-lines" },
    ),
    h("p", { class: "muted" }, `Placed ${when(order.placedAt)} · expected ${order.estimatedDelivery}`),
  );
}

// Every document this screen sends (validated against schema.graphql by the tests)
export const DOCUMENTS = { QUEUE, PICK_LIST, PACK, SHIP };

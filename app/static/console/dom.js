// Small DOM helpers. Everything the API returns is put on the page as text
// (textContent), never as HTML: a name or comment cannot inject markup.

/** h("p", {class: "x", onclick: fn}, "text", child…): an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value") {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function money(m) {
  if (!m) return "";
  return `${(m.amount / 100).toFixed(2)} ${m.currency}`;
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** A labelled input: <label>Text <input name=…></label>, with room for its error. */
export function field(label, attrs) {
  return h("label", { class: "field" }, h("span", {}, label), h("input", attrs));
}

export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows),
  );
}

/** Show the mutation's userErrors next to the field each names (its `name`), the rest
 * at the top of the form. Clears what an earlier attempt showed. */
export function showUserErrors(form, userErrors) {
  for (const old of form.querySelectorAll(".field-error")) old.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const error of userErrors || []) {
    const target = error.field ? fieldFor(form, error.field) : null;
    const note = h("p", { class: "field-error", role: "alert", "data-field": error.field || "" }, error.message);
    if (target) {
      target.setAttribute("aria-invalid", "true");
      (target.closest("label") || target).after(note);
    } else {
      form.prepend(note);
    }
  }
  return (userErrors || []).length === 0;
}

function fieldFor(form, name) {
  // "lines.0.quantity" or "lines[0].quantity": try the whole name, then its first part
  const candidates = [name, name.split(/[.[]/)[0]];
  for (const candidate of candidates) {
    const el = form.querySelector(`[name="${CSS.escape(candidate)}"]`);
    if (el) return el;
  }
  return null;
}

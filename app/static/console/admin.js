// Admin (ADMIN): staff accounts through the API (create, change role, deactivate: each
// audited; a deactivated account's sessions end at once) and the audit log with its
// filters. The first admin still comes from `orders-api create-user`.
import { gql } from "./api.js";
import { clear, field, h, showUserErrors, table, when } from "./dom.js";

const STAFF_ROLES = ["SUPPORT", "WAREHOUSE", "ADMIN"];
const USER = `email name role active createdAt`;

const STAFF = `query StaffUsers { staffUsers(first: 50) { edges { node { ${USER} } } } }`;
const CREATE = `mutation CreateStaffUser($email: String!, $name: String!, $password: String!, $role: Role!) {
  createStaffUser(email: $email, name: $name, password: $password, role: $role) { user { ${USER} } userErrors { field message code } }
}`;
const SET_ROLE = `mutation SetUserRole($email: String!, $role: Role!) {
  setUserRole(email: $email, role: $role) { user { ${USER} } userErrors { field message code } }
}`;
const DEACTIVATE = `mutation DeactivateUser($email: String!) {
  deactivateUser(email: $email) { user { ${USER} } userErrors { field message code } }
}`;
const AUDIT = `query AuditLog($filter: AuditFilterInput, $after: String) {
  auditLog(filter: $filter, first: 50, after: $after) {
    edges { node { at actorEmail actorRole action code subject outcome reason clientIp } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export function render(main, ctx) {
  const staff = h("section", { class: "card staff", "aria-label": "Staff accounts" });
  const audit = h("section", { class: "card audit", "aria-label": "Audit log" });
  clear(main, createForm(), staff, audit);
  loadStaff();
  auditView();

  function createForm() {
    const form = h(
      "form",
      { class: "card create-staff", "aria-label": "Create a staff account" },
      h("h2", {}, "New staff account"),
      h(
        "div",
        { class: "row" },
        field("Email", { name: "email", type: "email", required: true, autocomplete: "off" }),
        field("Name", { name: "name", required: true, autocomplete: "off" }),
        field("Password (at least 12 characters)", { name: "password", type: "password", required: true, autocomplete: "new-password" }),
        h("label", { class: "field" }, h("span", {}, "Role"), h("select", { name: "role" }, STAFF_ROLES.map((r) => h("option", { value: r }, r)))),
      ),
      h("button", { type: "submit" }, "Create account"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      try {
        const answer = await gql(CREATE, data);
        const payload = answer.createStaffUser;
        if (!showUserErrors(form, payload.userErrors)) return;
        ctx.notice(`Account ${payload.user.email} (${payload.user.role}) created.`);
        form.reset();
        loadStaff();
      } catch (error) {
        ctx.fail(error);
      }
    });
    return form;
  }

  async function loadStaff() {
    try {
      const data = await gql(STAFF);
      const users = data.staffUsers.edges.map((e) => e.node);
      clear(
        staff,
        h("h2", {}, "Staff accounts"),
        table(
          ["Email", "Name", "Role", "Active", "Since", ""],
          users.map((u) => userRow(u)),
          { class: "staff-users" },
        ),
      );
    } catch (error) {
      clear(staff, h("h2", {}, "Staff accounts"));
      ctx.fail(error);
    }
  }

  function userRow(u) {
    const self = u.email === ctx.user.email;
    const role = h("select", { name: "role", "aria-label": `Role of ${u.email}`, disabled: !u.active || self }, STAFF_ROLES.map((r) => h("option", { value: r, selected: r === u.role }, r)));
    const form = h(
      "form",
      { class: "user-actions" },
      role,
      h("button", { type: "submit", class: "secondary", disabled: !u.active || self }, "Change role"),
      h("button", { type: "button", class: "danger deactivate", disabled: !u.active || self, onclick: () => deactivate(form, u) }, "Deactivate"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await run(form, SET_ROLE, { email: u.email, role: role.value }, "setUserRole", `${u.email} is now ${role.value}.`);
    });
    return h(
      "tr",
      { "data-email": u.email, class: u.active ? "" : "inactive" },
      h("td", {}, u.email), h("td", {}, u.name), h("td", {}, u.role),
      h("td", { class: "active" }, u.active ? "yes" : "deactivated"), h("td", {}, when(u.createdAt)),
      h("td", {}, form),
    );
  }

  async function deactivate(form, u) {
    if (!window.confirm(`Deactivate ${u.email}? Their sessions end at once.`)) return;
    await run(form, DEACTIVATE, { email: u.email }, "deactivateUser", `${u.email} is deactivated; their sessions have ended.`);
  }

  async function run(form, query, variables, key, done) {
    try {
      const data = await gql(query, variables);
      if (!showUserErrors(form, data[key].userErrors)) return;
      ctx.notice(done);
      loadStaff();
    } catch (error) {
      ctx.fail(error);
    }
  }

  function auditView() {
    const rows = h("tbody", {});
    const more = h("button", { type: "button", class: "secondary", hidden: true }, "More");
    const form = h(
      "form",
      { class: "audit-filters", "aria-label": "Audit filters" },
      h(
        "div",
        { class: "row" },
        field("Actions (comma separated)", { name: "action", placeholder: "support_lookup, login…", autocomplete: "off" }),
        field("Actor email", { name: "actorEmail", type: "email", autocomplete: "off" }),
        field("Order code", { name: "code", autocomplete: "off", spellcheck: "false" }),
        field("Since (UTC)", { name: "since", type: "datetime-local" }),
        field("Until (UTC)", { name: "until", type: "datetime-local" }),
      ),
      h("button", { type: "submit" }, "Filter"),
    );
    const headers = ["At", "Who", "Role", "Action", "Code / subject", "Outcome", "Reason", "IP"];
    const log = h("table", { class: "audit-log" }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))), rows);
    let filter = null;
    let cursor = null;
    async function load(reset) {
      if (reset) {
        cursor = null;
        clear(rows);
      }
      log.setAttribute("aria-busy", "true");
      try {
        const data = await gql(AUDIT, { filter, after: cursor });
        const page = data.auditLog;
        for (const { node: e } of page.edges) {
          rows.append(h("tr", { "data-action": e.action }, h("td", {}, when(e.at)), h("td", {}, e.actorEmail || "–"), h("td", {}, e.actorRole), h("td", { class: "action" }, e.action), h("td", { class: "code" }, e.code || e.subject || ""), h("td", {}, e.outcome), h("td", { class: "reason" }, e.reason || ""), h("td", {}, e.clientIp || "")));
        }
        cursor = page.pageInfo.endCursor;
        more.hidden = !page.pageInfo.hasNextPage;
      } catch (error) {
        ctx.fail(error);
      } finally {
        log.removeAttribute("aria-busy");
      }
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const text = (name) => String(data.get(name) || "").trim();
      const iso = (name) => (text(name) ? new Date(`${text(name)}Z`).toISOString() : null);
      filter = {
        action: text("action") ? text("action").split(",").map((a) => a.trim()).filter(Boolean) : null,
        actorEmail: text("actorEmail") || null,
        code: text("code") || null,
        since: iso("since"),
        until: iso("until"),
      };
      ctx.quiet();
      load(true);
    });
    more.addEventListener("click", () => load(false));
    clear(audit, h("h2", {}, "Audit log"), form, log, more);
    load(true);
  }
}

// Every document this screen sends (validated against schema.graphql by the tests)
export const DOCUMENTS = { STAFF, CREATE, SET_ROLE, DEACTIVATE, AUDIT };

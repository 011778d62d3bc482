// The staff console: login, then the screens this account's role may use. Each screen
// asks the API only for what that role is given; the API is the security boundary, the
// console only leaves out what would be refused anyway.
import { ME, explain, gql, hasSession, login, logout, onSessionEnded } from "./api.js";
import { clear, field, h, showUserErrors } from "./dom.js";
import * as admin from "./admin.js";
import * as returns from "./returns.js";
import * as support from "./support.js";
import * as warehouse from "./warehouse.js";

const SCREENS = [
  { id: "support", title: "Support desk", roles: ["SUPPORT", "ADMIN"], module: support },
  { id: "warehouse", title: "Warehouse station", roles: ["WAREHOUSE", "ADMIN"], module: warehouse },
  { id: "returns", title: "Returns desk", roles: ["SUPPORT", "WAREHOUSE", "ADMIN"], module: returns },
  { id: "admin", title: "Admin", roles: ["ADMIN"], module: admin },
];
const HOME = { SUPPORT: "support", WAREHOUSE: "warehouse", ADMIN: "admin" };

const root = document.getElementById("console");
let user = null;
let pendingNotice = "";

/** What a screen gets: the user, and a place to show problems and news. */
function context(banner) {
  return {
    user,
    fail(error) {
      if (error && error.code === "UNAUTHENTICATED") return; // onSessionEnded shows the login
      clear(banner, explain(error));
      banner.className = "banner error";
      banner.dataset.code = (error && error.code) || "";
      banner.hidden = false;
    },
    notice(text) {
      clear(banner, text);
      banner.className = "banner ok";
      banner.dataset.code = "";
      banner.hidden = false;
    },
    quiet() {
      banner.hidden = true;
      clear(banner);
    },
  };
}

onSessionEnded(() => {
  user = null;
  pendingNotice = "Your session has ended. Please log in again.";
  showLogin();
});

function showLogin() {
  document.title = "Staff console · log in";
  const notice = h("p", { class: "banner error", role: "alert", hidden: !pendingNotice }, pendingNotice);
  pendingNotice = "";
  const form = h(
    "form",
    { class: "card login", "aria-label": "Log in" },
    h("h1", {}, "Staff console"),
    notice,
    field("Email", { name: "email", type: "email", autocomplete: "username", required: true }),
    field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    notice.hidden = true;
    const data = new FormData(form);
    try {
      const payload = await login(String(data.get("email")), String(data.get("password")));
      if (!showUserErrors(form, payload.userErrors)) return;
      user = payload.user;
      start();
    } catch (error) {
      clear(notice, explain(error));
      notice.hidden = false;
    }
  });
  clear(root, form);
  form.querySelector("input").focus();
}

function showStaffOnly() {
  document.title = "Staff console · staff only";
  clear(
    root,
    h(
      "section",
      { class: "card staff-only", "aria-label": "Staff only" },
      h("h1", {}, "Staff only"),
      h("p", {}, `You are logged in as ${user.email}, a customer account. This console is for the shop's staff.`),
      h("p", {}, "To see your orders, use the shop's website or app."),
      h("button", { type: "button", onclick: async () => { await logout(); user = null; showLogin(); } }, "Log out"),
    ),
  );
}

function allowed() {
  return SCREENS.filter((screen) => screen.roles.includes(user.role));
}

function start() {
  if (!user) return showLogin();
  if (user.role === "CUSTOMER") return showStaffOnly();
  const wanted = location.hash.replace(/^#/, "").split("/")[0];
  const screen = allowed().find((s) => s.id === wanted) || allowed().find((s) => s.id === HOME[user.role]);
  if (!screen) return showStaffOnly();
  if (location.hash !== `#${screen.id}`) history.replaceState(null, "", `#${screen.id}`);
  document.title = `Staff console · ${screen.title}`;
  const banner = h("div", { id: "banner", role: "alert", hidden: true });
  const main = h("main", { id: "screen", "data-screen": screen.id });
  const nav = h(
    "nav",
    { "aria-label": "Screens" },
    allowed().map((s) => h("a", { href: `#${s.id}`, "aria-current": s.id === screen.id ? "page" : false }, s.title)),
  );
  const header = h(
    "header",
    { class: "topbar" },
    h("strong", { class: "brand" }, "Staff console"),
    nav,
    h("span", { class: "who", "data-role": user.role }, `${user.name} · ${user.role}`),
    h("button", { type: "button", class: "secondary", onclick: async () => { await logout(); user = null; showLogin(); } }, "Log out"),
  );
  clear(root, header, banner, main);
  screen.module.render(main, context(banner));
}

window.addEventListener("hashchange", () => {
  if (user) start();
});

async function boot() {
  if (!hasSession()) return showLogin();
  try {
    const data = await gql(ME);
    user = data.me;
  } catch {
    user = null;
  }
  if (user) start();
  else showLogin();
}

boot();

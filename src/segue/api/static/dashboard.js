// The dashboard's shell: log in with the admin key, then route #/kpis, #/ops and
// #/profile/<identifier> to their pages (each page stops its own polling when left).

import { ApiError, auth, get, whenUnauthorized } from "./dash-api.js";
import { fill, h, notice } from "./dash-dom.js";
import * as kpis from "./dash-kpis.js";
import * as ops from "./dash-ops.js";
import * as profile from "./dash-profile.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const logout = document.getElementById("logout");
let unmount = () => {};

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  const param = rest.length ? decodeURIComponent(rest.join("/")) : "";
  if (page === "ops") return { name: "ops", page: ops, param };
  if (page === "profile") return { name: "profile", page: profile, param };
  return { name: "kpis", page: kpis, param };
}

function show() {
  unmount();
  if (!auth.key()) {
    login();
    return;
  }
  nav.hidden = false;
  logout.hidden = false;
  const { name, page, param } = route();
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = h("div", { class: "page", id: `page-${name}` });
  fill(main, view);
  unmount = page.mount(view, param) || (() => {});
}

function login(message) {
  unmount();
  unmount = () => {};
  nav.hidden = true;
  logout.hidden = true;
  const key = h("input", {
    type: "password", name: "key", id: "admin-key", required: true, autocomplete: "current-password",
    "aria-label": "admin key",
  });
  const status = h("div", { class: "login-status" }, message ? notice("error", message) : null);
  const form = h("form", { class: "login card", id: "login" },
    h("h1", {}, "segue dashboard"),
    h("p", {}, "Log in with the admin key (SEGUE_ADMIN_KEY, or the one segue printed at its first start). ",
      "It is kept in this tab only and sent as Authorization: Bearer."),
    h("label", {}, "Admin key ", key),
    h("button", { type: "submit" }, "Log in"),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = key.value.trim();
    try {
      await get("/v1/stats", { key: value });
    } catch (error) {
      const text = error instanceof ApiError && error.status === 401
        ? "That is not an admin key." : `segue did not answer: ${error.message}`;
      fill(status, notice("error", text));
      return;
    }
    auth.set(value);
    show();
  });
  fill(main, form);
  key.focus();
}

whenUnauthorized(() => {
  auth.clear();
  login("The admin key was refused; log in again.");
});
logout.addEventListener("click", () => {
  auth.clear();
  login();
});
window.addEventListener("hashchange", show);
show();

// The reference white-label portal: one page, styled by the brand of the domain it is opened on, that
// talks to whitebill only through its public GraphQL API (HTTP and graphql-ws). Routes live in the
// address's fragment: #/ (home: a client's workspace or a partner's dashboard), #/workspace/<id>,
// #/gateway, #/webhooks (staff), #/forgot; ?token=<reset token> sets a new password.
import "../style.css";
import { ApiError, gql, signedOut, token } from "./api";
import { applyBrand, brandHeader, loadBrand, type Brand } from "./brand";
import { h, replace } from "./dom";
import { t } from "./i18n";
import { clientPage } from "./pages/client";
import { forgotPage, problem, resetPage, signInPage } from "./pages/signin";
import { dashboardPage, gatewayPage, webhooksPage, workspacePage } from "./pages/staff";

const root = document.getElementById("app") as HTMLElement;
let stopPage: () => void = () => undefined;

const WHO = `query Who { viewer { kind email } }`;

function header(brand: Brand, email: string | null): HTMLElement {
  const out = h("button", { type: "button", class: "link", "data-test": "sign-out" }, t("sign-out"));
  out.addEventListener("click", async () => {
    try {
      await gql(`mutation Logout { logout { ok } }`);
    } finally {
      signedOut();
      location.hash = "#/";
      void render(brand);
    }
  });
  return brandHeader(brand, h("span", { class: "muted" }, email ?? ""), out);
}

async function render(brand: Brand): Promise<void> {
  stopPage();
  stopPage = () => undefined;
  const route = location.hash.replace(/^#/, "") || "/";
  const reset = new URLSearchParams(location.search).get("token");
  if (reset) return resetPage(root, reset);
  if (!token()) {
    if (route === "/forgot") return forgotPage(root, brand);
    return signInPage(root, brand, () => void render(brand));
  }
  try {
    const who = (await gql<{ viewer: { kind: string; email: string | null } }>(WHO)).viewer;
    const top = header(brand, who.email);
    const again = (): void => void render(brand);
    if (who.kind === "WORKSPACE") {
      stopPage = await clientPage(root, top);
    } else if (route.startsWith("/workspace/")) {
      stopPage = await workspacePage(root, top, decodeURIComponent(route.slice("/workspace/".length)), again);
    } else if (route === "/gateway") {
      stopPage = await gatewayPage(root, top, again);
    } else if (route === "/webhooks") {
      stopPage = await webhooksPage(root, top);
    } else {
      stopPage = await dashboardPage(root, top);
    }
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHENTICATED") {
      signedOut(); // the session ended or was revoked: sign in again
      return render(brand);
    }
    replace(root, problem(error));
  }
}

async function start(): Promise<void> {
  const brand = await loadBrand(location.hostname);
  if (!brand) {
    replace(
      root,
      h("section", { class: "card narrow" }, h("h1", {}, t("no-brand")), h("p", { class: "muted" }, t("no-brand-hint"))),
    );
    return;
  }
  applyBrand(brand);
  window.addEventListener("hashchange", () => void render(brand));
  await render(brand);
}

replace(root, h("p", { class: "loading" }, t("loading")));
void start();

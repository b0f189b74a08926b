// Signing in on the brand's page, asking for a reset link, and setting a new password from one.
import { ApiError, gql, settled, signedIn, type UserError } from "../api";
import type { Brand } from "../brand";
import { fields, h, replace } from "../dom";
import { t } from "../i18n";

const LOGIN = `mutation Login($input: LoginInput!) {
  login(input: $input) { token viewer { kind } errors { code field message } }
}`;
const REQUEST_RESET = `mutation RequestReset($input: RequestPasswordResetInput!) {
  requestPasswordReset(input: $input) { ok errors { code field message } }
}`;
const RESET = `mutation Reset($input: ResetPasswordInput!) {
  resetPassword(input: $input) { ok errors { code field message } }
}`;

export function problem(error: unknown): HTMLElement {
  const message = error instanceof ApiError ? error.message : String(error);
  const code = error instanceof ApiError ? error.code : "ERROR";
  return h("p", { class: "problem", role: "alert", "data-test": "problem", "data-code": code }, message);
}

function card(...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "card narrow" }, ...children);
}

export function signInPage(root: HTMLElement, brand: Brand, done: () => void): void {
  const status = h("div");
  const form = h(
    "form",
    { "data-test": "sign-in" },
    h("label", {}, t("email"), h("input", { name: "email", type: "email", autocomplete: "username", required: true })),
    h(
      "label",
      {},
      t("password"),
      h("input", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    ),
    h("button", { type: "submit" }, t("sign-in")),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { email, password } = fields(form);
    try {
      type Answer = { login: { token: string | null; errors: UserError[] } };
      const answer = await gql<Answer>(LOGIN, { input: { email, password, brand: brand.domain } });
      const payload = settled(answer.login);
      signedIn(payload.token as string);
      done();
    } catch (error) {
      replace(status, problem(error));
    }
  });
  const forgot = h("a", { href: "#/forgot", "data-test": "forgot" }, t("forgot-password"));
  replace(root, card(h("h1", {}, brand.displayName), form, h("p", {}, forgot)));
}

export function forgotPage(root: HTMLElement, brand: Brand): void {
  const status = h("div");
  const form = h(
    "form",
    {},
    h("label", {}, t("email"), h("input", { name: "email", type: "email", required: true })),
    h("button", { type: "submit" }, t("send-reset")),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      type Answer = { requestPasswordReset: { ok: boolean; errors: UserError[] } };
      const answer = await gql<Answer>(REQUEST_RESET, { input: { email: fields(form).email, brand: brand.domain } });
      settled(answer.requestPasswordReset);
      replace(status, h("p", { class: "ok" }, t("reset-sent")));
    } catch (error) {
      replace(status, problem(error));
    }
  });
  replace(root, card(h("h1", {}, t("forgot-password")), form, h("p", {}, h("a", { href: "#/" }, t("back-to-sign-in")))));
}

export function resetPage(root: HTMLElement, resetToken: string): void {
  const status = h("div");
  const form = h(
    "form",
    {},
    h(
      "label",
      {},
      t("new-password"),
      h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 10 }),
    ),
    h("button", { type: "submit" }, t("set-password")),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      type Answer = { resetPassword: { ok: boolean; errors: UserError[] } };
      const input = { token: resetToken, newPassword: fields(form).password };
      settled((await gql<Answer>(RESET, { input })).resetPassword);
      history.replaceState(null, "", location.pathname);
      replace(status, h("p", { class: "ok" }, t("password-set"), " ", h("a", { href: "#/" }, t("back-to-sign-in"))));
    } catch (error) {
      replace(status, problem(error));
    }
  });
  replace(root, card(h("h1", {}, t("new-password")), form));
}

// A client's home: plan, status with its reasons, limits and usage, balances that change live, buying
// a package (or a plan) with the partner's payment methods, changing or cancelling the plan with the
// preview shown first, and the payment history.
import { gql, live, newKey, settled, type UserError } from "../api";
import { fields, h, replace } from "../dom";
import { date, dateTime, money, quantity, t } from "../i18n";
import { followPayment, type PaymentView } from "./payment";
import { problem } from "./signin";
import type { Money, Quantity } from "../types";

interface Limit {
  name: string;
  value: number;
}
interface Wallet {
  id: string;
  unit: string;
  balance: Quantity;
}
interface Reason {
  kind: string;
  limit: string | null;
  usage: number | null;
  max: number | null;
  failures: number | null;
}
interface Workspace {
  id: string;
  name: string;
  status: string;
  statusReasons: Reason[];
  subscription: {
    status: string;
    currentPeriodEnd: string;
    cancelAtPeriodEnd: boolean;
    plan: { id: string; name: string; price: Money };
  } | null;
  limits: Limit[];
  usage: Limit[];
  wallets: Wallet[];
  payments: { nodes: { id: string; status: string; method: string; amount: Money; createdAt: string }[] };
  partner: { paymentMethods: string[] };
}
interface Home {
  viewer: { email: string | null; workspace: Workspace | null };
  creditPackages: { nodes: { id: string; name: string; unit: string; quantity: string; price: Money }[] };
  plans: { nodes: { id: string; name: string; price: Money }[] };
}

const HOME = `query ClientHome {
  viewer {
    email
    workspace {
      id name status
      statusReasons { kind limit usage max failures }
      subscription { status currentPeriodEnd cancelAtPeriodEnd plan { id name price { amount currency } } }
      limits { name value }
      usage { name value }
      wallets { id unit balance { amount unit } }
      payments(first: 20) { nodes { id status method amount { amount currency } createdAt } }
      partner { paymentMethods }
    }
  }
  creditPackages(first: 50) { nodes { id name unit quantity price { amount currency } } }
  plans(first: 50) { nodes { id name price { amount currency } } }
}`;
const WALLET_CHANGED = `subscription WalletChanged($id: ID!) {
  walletBalanceChanged(walletId: $id) { id unit balance { amount unit } }
}`;
const STATUS_CHANGED = `subscription StatusChanged($id: ID!) {
  workspaceStatusChanged(workspaceId: $id) { id status statusReasons { kind limit usage max failures } }
}`;
const CHECKOUT = `mutation Checkout($input: CheckoutInput!) {
  checkout(input: $input) { payment { id status payerAction } errors { code field message } }
}`;
const PREVIEW = `query Preview($workspaceId: ID!, $planId: ID!) {
  previewChange(workspaceId: $workspaceId, planId: $planId) {
    price { amount currency } limits { name value } wouldPause excesses { limit usage max }
  }
}`;
const CHANGE = `mutation ChangePlan($input: ChangePlanInput!) {
  changePlan(input: $input) { payment { id status payerAction } errors { code field message } }
}`;
const CANCEL = `mutation Cancel($input: CancelSubscriptionInput!) {
  cancelSubscription(input: $input) { subscription { cancelAtPeriodEnd } errors { code field message } }
}`;

type Stop = () => void;

export async function clientPage(root: HTMLElement, header: HTMLElement): Promise<Stop> {
  const stops: Stop[] = [];
  const home = await gql<Home>(HOME);
  const workspace = home.viewer.workspace;
  if (!workspace) throw new Error("this sign-in has no workspace");

  const status = h("div", { class: "status" });
  const showStatus = (value: string, reasons: Reason[]): void => {
    replace(
      status,
      h("span", { class: `badge ${value.toLowerCase()}`, "data-test": "status" }, t(`status.${value}`)),
      h("ul", { class: "reasons" }, reasons.map((r) => h("li", {}, t(`reason.${r.kind}`, { ...r })))),
    );
  };
  showStatus(workspace.status, workspace.statusReasons);

  const balances = h("div", { class: "balances" });
  const follow = (wallet: Wallet): void => {
    balances.append(
      h(
        "div",
        { class: "balance" },
        h("span", { class: "label" }, t(`unit.${wallet.unit}`)),
        h("strong", { "data-test": `balance-${wallet.unit}` }, quantity(wallet.balance)),
      ),
    );
    stops.push(
      live<{ walletBalanceChanged: Wallet }>(WALLET_CHANGED, { id: wallet.id }, (data) => {
        const shown = balances.querySelector(`[data-test="balance-${data.walletBalanceChanged.unit}"]`);
        if (shown) shown.textContent = quantity(data.walletBalanceChanged.balance);
      }),
    );
  };
  const followed = new Set<string>();
  const followNew = (wallets: Wallet[]): void => {
    for (const wallet of wallets) {
      if (followed.has(wallet.id)) continue;
      followed.add(wallet.id);
      follow(wallet);
    }
  };
  followNew(workspace.wallets);
  stops.push(
    live<{ workspaceStatusChanged: { status: string; statusReasons: Reason[] } }>(
      STATUS_CHANGED,
      { id: workspace.id },
      (data) => showStatus(data.workspaceStatusChanged.status, data.workspaceStatusChanged.statusReasons),
    ),
  );

  const used = new Map(workspace.usage.map((u) => [u.name, u.value]));
  const limits = h(
    "table",
    { class: "limits" },
    workspace.limits.map((limit) =>
      h("tr", {}, h("th", {}, limit.name), h("td", {}, `${used.get(limit.name) ?? 0} / ${limit.value}`)),
    ),
  );

  const subscription = workspace.subscription;
  const plan = h(
    "div",
    { class: "plan" },
    subscription
      ? [
          h("strong", { "data-test": "plan-name" }, subscription.plan.name),
          " · ",
          money(subscription.plan.price),
          h(
            "p",
            { class: "muted" },
            t(subscription.cancelAtPeriodEnd ? "ends" : "renews", { date: date(subscription.currentPeriodEnd) }),
          ),
        ]
      : h("strong", {}, t("no-plan")),
  );

  const paymentsList = h(
    "table",
    { class: "payments", "data-test": "payments" },
    workspace.payments.nodes.length
      ? workspace.payments.nodes.map((p) =>
            h(
              "tr",
              {},
              h("td", {}, dateTime(p.createdAt)),
              h("td", {}, t(`method.${p.method}`)),
              h("td", { class: "amount" }, money(p.amount)),
              h("td", {}, t(`payment.${p.status}`)),
            ),
          )
      : h("tr", {}, h("td", {}, t("no-payments"))),
  );

  const methods = workspace.partner.paymentMethods.filter((m) => m !== "BALANCE");
  // Once paid: the history shows it, and a wallet the purchase opened (the first points bought) appears.
  const buy = buyForm(workspace, home, methods, stops, () => void refresh(paymentsList, followNew));
  const change = subscription ? changeForm(workspace, home, stops) : null;

  replace(
    root,
    header,
    h(
      "main",
      { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, workspace.name), status, h("h3", {}, t("plan")), plan),
      h("section", { class: "card" }, h("h2", {}, t("balances")), balances),
      h("section", { class: "card" }, h("h2", {}, t("limits")), limits),
      h("section", { class: "card" }, h("h2", {}, t("buy-points")), buy),
      change ? h("section", { class: "card" }, h("h2", {}, t("buy-plan")), change) : null,
      h("section", { class: "card wide" }, h("h2", {}, t("payments")), paymentsList),
    ),
  );
  return () => stops.forEach((stop) => stop());
}

async function refresh(table: HTMLElement, followNew: (wallets: Wallet[]) => void): Promise<void> {
  const home = await gql<Home>(HOME);
  followNew(home.viewer.workspace?.wallets ?? []);
  const rows = home.viewer.workspace?.payments.nodes ?? []; // newest first
  replace(
    table,
    rows.map((p) =>
      h(
        "tr",
        {},
        h("td", {}, dateTime(p.createdAt)),
        h("td", {}, t(`method.${p.method}`)),
        h("td", { class: "amount" }, money(p.amount)),
        h("td", {}, t(`payment.${p.status}`)),
      ),
    ),
  );
}

function buyForm(workspace: Workspace, home: Home, methods: string[], stops: Stop[], paid: () => void): HTMLElement {
  const outcome = h("div", { class: "outcome" });
  const items = [
    ...home.creditPackages.nodes.map((p) => ({
      value: `package:${p.id}`,
      label: `${p.name} · ${money(p.price)}`,
    })),
    ...(workspace.subscription
      ? []
      : home.plans.nodes.map((p) => ({ value: `plan:${p.id}`, label: `${p.name} · ${money(p.price)}` }))),
  ];
  const submit = h("button", { type: "submit" }, t("buy"));
  const form = h(
    "form",
    { "data-test": "buy" },
    h("select", { name: "item", required: true }, items.map((i) => h("option", { value: i.value }, i.label))),
    h(
      "label",
      {},
      t("pay-with"),
      h("select", { name: "method" }, methods.map((m) => h("option", { value: m }, t(`method.${m}`)))),
    ),
    h("label", {}, t("tax-id"), h("input", { name: "taxId", inputmode: "numeric", autocomplete: "off" })),
    submit,
    outcome,
  );
  let key = newKey();
  form.addEventListener("change", () => {
    key = newKey(); // another choice is another purchase; a retried click keeps the key
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = fields(form);
    const [kind, id] = values.item.split(":");
    const item = kind === "package" ? { creditPackageId: id } : { planId: id };
    submit.disabled = true;
    try {
      type Answer = { checkout: { payment: PaymentView | null; errors: UserError[] } };
      const input = {
        workspaceId: workspace.id,
        item,
        method: values.method,
        idempotencyKey: key,
        taxId: values.taxId.trim() || null,
      };
      const payment = settled((await gql<Answer>(CHECKOUT, { input })).checkout).payment;
      key = newKey();
      if (payment) {
        paid(); // the history lists it at once, as pending
        stops.push(followPayment(outcome, payment, paid));
      }
    } catch (error) {
      replace(outcome, problem(error));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function changeForm(workspace: Workspace, home: Home, stops: Stop[]): HTMLElement {
  const outcome = h("div", { class: "outcome" });
  const others = home.plans.nodes.filter((p) => p.id !== workspace.subscription?.plan.id);
  const form = h(
    "form",
    { "data-test": "change-plan" },
    h("select", { name: "plan" }, others.map((p) => h("option", { value: p.id }, `${p.name} · ${money(p.price)}`))),
    h("button", { type: "submit", class: "secondary" }, t("preview")),
    outcome,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const planId = fields(form).plan;
    try {
      type Preview = {
        previewChange: {
          price: Money | null;
          limits: Limit[];
          wouldPause: boolean;
          excesses: { limit: string; usage: number; max: number }[];
        };
      };
      const preview = (await gql<Preview>(PREVIEW, { workspaceId: workspace.id, planId })).previewChange;
      const key = newKey();
      const confirm = h("button", { type: "button" }, t("confirm"));
      confirm.addEventListener("click", async () => {
        confirm.disabled = true;
        try {
          type Answer = { changePlan: { payment: PaymentView | null; errors: UserError[] } };
          const input = { workspaceId: workspace.id, planId, idempotencyKey: key };
          const payment = settled((await gql<Answer>(CHANGE, { input })).changePlan).payment;
          if (payment) stops.push(followPayment(outcome, payment, () => location.reload()));
          else replace(outcome, h("p", { class: "ok" }, t("plan-changed")));
        } catch (error) {
          replace(outcome, problem(error));
          confirm.disabled = false;
        }
      });
      replace(
        outcome,
        h("div", { class: "preview", "data-test": "preview" }, [
          h("p", {}, t("preview-price", { price: preview.price ? money(preview.price) : "—" })),
          h("ul", {}, preview.limits.map((l) => h("li", {}, `${l.name}: ${l.value}`))),
          preview.wouldPause ? h("p", { class: "problem" }, t("would-pause")) : null,
          confirm,
        ]),
      );
    } catch (error) {
      replace(outcome, problem(error));
    }
  });
  const cancel = h("button", { type: "button", class: "danger" }, t("cancel"));
  cancel.addEventListener("click", async () => {
    if (!window.confirm(t("cancel-confirm"))) return;
    try {
      type Answer = { cancelSubscription: { errors: UserError[] } };
      const input = { workspaceId: workspace.id, atPeriodEnd: true };
      settled((await gql<Answer>(CANCEL, { input })).cancelSubscription);
      replace(outcome, h("p", { class: "ok" }, t("cancel-done")));
    } catch (error) {
      replace(outcome, problem(error));
    }
  });
  return h("div", {}, form, workspace.subscription?.cancelAtPeriodEnd ? null : cancel);
}

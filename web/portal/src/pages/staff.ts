// A partner's staff: the workspaces dashboard (the query bench/p1_dashboard.py measures), one
// workspace's wallets and ledger with grants and debits by hand, assigning a plan, the payment
// gateway, and the deliveries of the partner's webhooks.
import { gql, live, newKey, settled, type UserError } from "../api";
import { fields, h, replace } from "../dom";
import { date, dateTime, money, quantity, t } from "../i18n";
import { problem } from "./signin";
import type { Money, Quantity } from "../types";

type Stop = () => void;

const DASHBOARD = `query Dashboard($first: Int!, $after: String) {
  workspaces(first: $first, after: $after) {
    nodes {
      id name status
      subscription { status currentPeriodEnd plan { id name price { amount currency } } }
      limits { name value }
      wallets { unit balance { amount } }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;

interface DashboardRow {
  id: string;
  name: string;
  status: string;
  subscription: { status: string; currentPeriodEnd: string; plan: { name: string; price: Money } } | null;
  limits: { name: string; value: number }[];
  wallets: { unit: string; balance: { amount: string } }[];
}

export function staffNav(): HTMLElement {
  return h(
    "nav",
    { class: "tabs" },
    h("a", { href: "#/" }, t("dashboard")),
    h("a", { href: "#/gateway" }, t("gateway")),
    h("a", { href: "#/webhooks" }, t("webhooks")),
  );
}

export async function dashboardPage(root: HTMLElement, header: HTMLElement): Promise<Stop> {
  const rows: DashboardRow[] = [];
  let after: string | null = null;
  do {
    type Page = { workspaces: { nodes: DashboardRow[]; pageInfo: { hasNextPage: boolean; endCursor: string } } };
    const page: Page = await gql<Page>(DASHBOARD, { first: 100, after });
    rows.push(...page.workspaces.nodes);
    after = page.workspaces.pageInfo.hasNextPage ? page.workspaces.pageInfo.endCursor : null;
  } while (after);
  const table = h(
    "table",
    { class: "dashboard", "data-test": "dashboard" },
    h(
      "tr",
      {},
      [t("workspace"), t("status"), t("plan"), t("limits"), t("wallets"), ""].map((c) => h("th", {}, c)),
    ),
    rows.map((row) =>
      h(
        "tr",
        { "data-test": "workspace-row" },
        h("td", {}, row.name),
        h("td", {}, h("span", { class: `badge ${row.status.toLowerCase()}` }, t(`status.${row.status}`))),
        h(
          "td",
          {},
          row.subscription
            ? `${row.subscription.plan.name} · ${money(row.subscription.plan.price)} · ${date(row.subscription.currentPeriodEnd)}`
            : t("no-plan"),
        ),
        h("td", { class: "muted" }, row.limits.map((l) => `${l.name} ${l.value}`).join(", ")),
        h("td", {}, row.wallets.map((w) => quantity({ amount: w.balance.amount, unit: w.unit })).join(" · ")),
        h("td", {}, h("a", { href: `#/workspace/${encodeURIComponent(row.id)}` }, t("open"))),
      ),
    ),
  );
  replace(root, header, staffNav(), h("main", {}, h("section", { class: "card wide" }, h("h2", {}, t("workspaces")), table)));
  return () => undefined;
}

const WORKSPACE = `query StaffWorkspace($id: ID!) {
  node(id: $id) {
    ... on Workspace {
      id name status
      subscription { plan { id name } }
      wallets {
        id unit balance { amount unit }
        entries(first: 20) { nodes { amount { amount unit } balanceAfter { amount unit } cause note actor createdAt } }
      }
    }
  }
  plans(first: 50) { nodes { id name price { amount currency } } }
}`;
const WALLET_CHANGED = `subscription WalletChanged($id: ID!) {
  walletBalanceChanged(walletId: $id) { id unit balance { amount unit } }
}`;
// Whole operations, never assembled at run time: the build lists them for the registry (portal-operations.graphql).
const ADJUST = {
  grantUnits: `mutation Grant($input: AdjustWorkspaceBalanceInput!) {
  grantUnits(input: $input) { errors { code field message } }
}`,
  debitUnits: `mutation Debit($input: AdjustWorkspaceBalanceInput!) {
  debitUnits(input: $input) { errors { code field message } }
}`,
};
const ASSIGN = `mutation Assign($input: AssignPlanInput!) {
  assignPlan(input: $input) { errors { code field message } }
}`;

interface Entry {
  amount: Quantity;
  balanceAfter: Quantity;
  cause: string;
  note: string;
  actor: string | null;
  createdAt: string;
}
interface StaffWorkspace {
  node: {
    id: string;
    name: string;
    status: string;
    subscription: { plan: { id: string; name: string } } | null;
    wallets: { id: string; unit: string; balance: Quantity; entries: { nodes: Entry[] } }[];
  } | null;
  plans: { nodes: { id: string; name: string; price: Money }[] };
}

export async function workspacePage(
  root: HTMLElement,
  header: HTMLElement,
  id: string,
  reload: () => void,
): Promise<Stop> {
  const stops: Stop[] = [];
  const answer = await gql<StaffWorkspace>(WORKSPACE, { id });
  const workspace = answer.node;
  if (!workspace) throw new Error("not found");

  const wallets = workspace.wallets.map((wallet) => {
    const balance = h("strong", { "data-test": `balance-${wallet.unit}` }, quantity(wallet.balance));
    stops.push(
      live<{ walletBalanceChanged: { balance: Quantity } }>(WALLET_CHANGED, { id: wallet.id }, (data) => {
        balance.textContent = quantity(data.walletBalanceChanged.balance);
      }),
    );
    return h(
      "div",
      { class: "wallet" },
      h("h3", {}, t(`unit.${wallet.unit}`), " ", balance),
      h(
        "table",
        { class: "ledger" },
        wallet.entries.nodes.map((e) =>
          h(
            "tr",
            {},
            h("td", {}, dateTime(e.createdAt)),
            h("td", {}, e.cause),
            h("td", { class: "amount" }, quantity(e.amount)),
            h("td", { class: "amount muted" }, quantity(e.balanceAfter)),
            h("td", {}, e.note),
            h("td", { class: "muted" }, e.actor ?? ""),
          ),
        ),
      ),
    );
  });

  const outcome = h("div", { class: "outcome" });
  const units = [...new Set(["POINTS", "MESSAGE_CREDITS", ...workspace.wallets.map((w) => w.unit)])];
  const adjust = h(
    "form",
    { "data-test": "adjust" },
    h("label", {}, t("unit"), h("select", { name: "unit" }, units.map((u) => h("option", { value: u }, t(`unit.${u}`))))),
    h("label", {}, t("amount"), h("input", { name: "amount", inputmode: "decimal", required: true })),
    h("label", {}, t("note"), h("input", { name: "note" })),
    h("button", { type: "submit", name: "grantUnits", value: "grantUnits" }, t("grant")),
    h("button", { type: "submit", name: "debitUnits", value: "debitUnits", class: "danger" }, t("debit")),
    outcome,
  );
  let key = newKey();
  adjust.addEventListener("input", () => {
    key = newKey();
  });
  adjust.addEventListener("submit", async (event) => {
    event.preventDefault();
    const which = ((event as SubmitEvent).submitter as HTMLButtonElement | null)?.value === "debitUnits" ? "debitUnits" : "grantUnits";
    const values = fields(adjust);
    try {
      const input = { workspaceId: workspace.id, unit: values.unit, amount: values.amount.trim(), note: values.note, idempotencyKey: key };
      const done = await gql<Record<string, { errors: UserError[] }>>(ADJUST[which], { input });
      settled(done[which]);
      key = newKey();
      replace(outcome, h("p", { class: "ok" }, t("saved")));
      reload();
    } catch (error) {
      replace(outcome, problem(error));
    }
  });

  const assignOutcome = h("div", { class: "outcome" });
  const assign = h(
    "form",
    { "data-test": "assign" },
    h("select", { name: "plan" }, answer.plans.nodes.map((p) => h("option", { value: p.id }, `${p.name} · ${money(p.price)}`))),
    h("label", {}, t("note"), h("input", { name: "note" })),
    h("button", { type: "submit" }, t("assign")),
    assignOutcome,
  );
  const assignKey = newKey();
  assign.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = fields(assign);
    try {
      const input = { workspaceId: workspace.id, planId: values.plan, note: values.note, idempotencyKey: `${assignKey}:${values.plan}` };
      settled((await gql<{ assignPlan: { errors: UserError[] } }>(ASSIGN, { input })).assignPlan);
      replace(assignOutcome, h("p", { class: "ok" }, t("saved")));
    } catch (error) {
      replace(assignOutcome, problem(error));
    }
  });

  replace(
    root,
    header,
    staffNav(),
    h(
      "main",
      { class: "grid" },
      h(
        "section",
        { class: "card wide" },
        h("p", {}, h("a", { href: "#/" }, `← ${t("back")}`)),
        h("h2", {}, workspace.name, " ", h("span", { class: `badge ${workspace.status.toLowerCase()}` }, t(`status.${workspace.status}`))),
        h("p", {}, t("plan"), ": ", workspace.subscription?.plan.name ?? t("no-plan")),
      ),
      h("section", { class: "card" }, h("h2", {}, t("grant-or-debit")), adjust),
      h("section", { class: "card" }, h("h2", {}, t("assign-plan")), assign),
      h("section", { class: "card wide" }, h("h2", {}, t("ledger")), wallets),
    ),
  );
  return () => stops.forEach((stop) => stop());
}

const GATEWAYS = `query Gateways {
  viewer { partner { gatewayConfigs(first: 20) { nodes { id provider mode methods isActive credentialsHint webhookUrl webhookFailing } } } }
}`;
const CONFIGURE = `mutation Configure($input: ConfigureGatewayInput!) {
  configureGateway(input: $input) { gatewayConfig { id } errors { code field message } }
}`;

interface GatewayRow {
  id: string;
  provider: string;
  mode: string;
  methods: string[];
  isActive: boolean;
  credentialsHint: string | null;
  webhookUrl: string;
  webhookFailing: boolean;
}

export async function gatewayPage(root: HTMLElement, header: HTMLElement, reload: () => void): Promise<Stop> {
  const answer = await gql<{ viewer: { partner: { gatewayConfigs: { nodes: GatewayRow[] } } | null } }>(GATEWAYS);
  const configs = answer.viewer.partner?.gatewayConfigs.nodes ?? [];
  const outcome = h("div", { class: "outcome" });
  const form = h(
    "form",
    { "data-test": "configure-gateway" },
    h("label", {}, t("provider"), h("select", { name: "provider" }, ["asaas", "stripe", "manual"].map((p) => h("option", { value: p }, p)))),
    h(
      "fieldset",
      {},
      h("legend", {}, t("methods")),
      ["PIX", "BOLETO", "CARD", "MANUAL"].map((m) =>
        h("label", { class: "inline" }, h("input", { type: "checkbox", name: `method-${m}`, value: m }), t(`method.${m}`)),
      ),
    ),
    h("label", {}, t("mode"), h("select", { name: "mode" }, ["TEST", "LIVE"].map((m) => h("option", { value: m }, m)))),
    h("label", {}, t("api-key"), h("input", { name: "apiKey", type: "password", autocomplete: "off" })),
    h("label", {}, t("webhook-secret"), h("input", { name: "webhookSecret", type: "password", autocomplete: "off" })),
    h("button", { type: "submit" }, t("save")),
    outcome,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = fields(form);
    const methods = Object.keys(values).filter((k) => k.startsWith("method-")).map((k) => values[k]);
    try {
      const input = {
        provider: values.provider,
        methods,
        mode: values.mode,
        apiKey: values.apiKey || null,
        webhookSecret: values.webhookSecret || null,
      };
      settled((await gql<{ configureGateway: { errors: UserError[] } }>(CONFIGURE, { input })).configureGateway);
      reload();
    } catch (error) {
      replace(outcome, problem(error));
    }
  });
  const list = h(
    "table",
    { class: "gateways" },
    configs.map((c) =>
      h(
        "tr",
        {},
        h("td", {}, c.provider, c.isActive ? " ✓" : ""),
        h("td", {}, c.mode),
        h("td", {}, c.methods.map((m) => t(`method.${m}`)).join(", ")),
        h("td", { class: "muted" }, c.credentialsHint ?? ""),
        h("td", {}, h("small", {}, t("webhook-url"), ": "), h("code", {}, c.webhookUrl)),
      ),
    ),
  );
  replace(
    root,
    header,
    staffNav(),
    h("main", { class: "grid" }, h("section", { class: "card wide" }, h("h2", {}, t("gateway")), list), h("section", { class: "card" }, form)),
  );
  return () => undefined;
}

const DELIVERIES = `query Deliveries {
  viewer { partner { webhookEndpoints(first: 20) { nodes { id url enabled
    deliveries(first: 50) { nodes { eventType state attempts lastStatus lastError createdAt } } } } } }
}`;

interface Delivery {
  eventType: string;
  state: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: string;
}

export async function webhooksPage(root: HTMLElement, header: HTMLElement): Promise<Stop> {
  type Answer = {
    viewer: { partner: { webhookEndpoints: { nodes: { url: string; deliveries: { nodes: Delivery[] } }[] } } | null };
  };
  const endpoints = (await gql<Answer>(DELIVERIES)).viewer.partner?.webhookEndpoints.nodes ?? [];
  const sections = endpoints.map((endpoint) =>
    h(
      "section",
      { class: "card wide" },
      h("h3", {}, h("code", {}, endpoint.url)),
      endpoint.deliveries.nodes.length
        ? h(
            "table",
            {},
            endpoint.deliveries.nodes.map((d) =>
              h(
                "tr",
                {},
                h("td", {}, dateTime(d.createdAt)),
                h("td", {}, d.eventType),
                h("td", {}, d.state),
                h("td", {}, String(d.attempts)),
                h("td", {}, d.lastStatus === null ? "" : String(d.lastStatus)),
                h("td", { class: "muted" }, d.lastError ?? ""),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("no-deliveries")),
    ),
  );
  replace(root, header, staffNav(), h("main", { class: "grid" }, h("h2", {}, t("webhooks")), sections.length ? sections : h("p", {}, t("no-deliveries"))));
  return () => undefined;
}

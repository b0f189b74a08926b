// The portal speaks the browser's language (Brazilian Portuguese or English) and formats money and
// numbers by its locale. Amounts arrive as exact decimal strings ("49.90") and are formatted as such:
// Intl formats a decimal string without turning it into a float.
const MESSAGES = {
  en: {
    "sign-in": "Sign in",
    "sign-out": "Sign out",
    email: "E-mail",
    password: "Password",
    "forgot-password": "Forgot your password?",
    "send-reset": "E-mail me a reset link",
    "reset-sent": "If that e-mail has an account here, a reset link is on its way.",
    "new-password": "New password",
    "set-password": "Set password",
    "password-set": "Your password is set: sign in with it.",
    "back-to-sign-in": "Back to sign in",
    "no-brand": "No brand is set up at this address.",
    "no-brand-hint": "Open the portal on a partner's own domain (in development, the demo is at http://demo.localhost:8000/portal/).",
    plan: "Plan",
    "no-plan": "No plan yet",
    status: "Status",
    renews: "Renews on {date}",
    ends: "Ends on {date}",
    limits: "Limits and usage",
    balances: "Balances",
    "buy-points": "Buy a package",
    "buy-plan": "Change plan",
    "pay-with": "Pay with",
    "tax-id": "CPF or CNPJ",
    buy: "Buy",
    "pix-scan": "Scan the QR code with your bank's app, or copy the code:",
    "pix-copy": "Copy code",
    "boleto-line": "Boleto line:",
    "open-boleto": "Open the boleto",
    "open-payment-page": "Pay on the payment page",
    "waiting-payment": "Waiting for the payment…",
    paid: "Paid: thank you!",
    "payment-failed": "The payment did not go through.",
    payments: "Payment history",
    "no-payments": "No payments yet.",
    preview: "Preview",
    "preview-price": "You will pay {price} per period; the new limits:",
    "would-pause": "This plan's limits are below what you use: the workspace would be paused.",
    confirm: "Confirm",
    "plan-changed": "Your plan is changed.",
    cancel: "Cancel plan",
    "cancel-confirm": "Cancel at the end of the current period?",
    "cancel-done": "Your plan ends at the end of the period.",
    workspaces: "Workspaces",
    workspace: "Workspace",
    wallets: "Wallets",
    ledger: "Ledger",
    "grant-or-debit": "Grant or debit units",
    unit: "Unit",
    amount: "Amount",
    note: "Note",
    grant: "Grant",
    debit: "Debit",
    "assign-plan": "Assign a plan",
    assign: "Assign",
    gateway: "Payment gateway",
    provider: "Provider",
    methods: "Methods",
    mode: "Mode",
    "api-key": "API key",
    "webhook-secret": "Webhook secret",
    save: "Save",
    saved: "Saved.",
    "webhook-url": "Webhook address (give it to the provider)",
    webhooks: "Webhook deliveries",
    "no-deliveries": "No deliveries yet.",
    back: "Back",
    loading: "Loading…",
    dashboard: "Dashboard",
    open: "Open",
    "reason.NO_PLAN": "No plan",
    "reason.LIMIT_EXCEEDED": "Over the {limit} limit ({usage} of {max})",
    "reason.PAYMENT_OVERDUE": "Payment overdue ({failures} failed attempts)",
    "status.ACTIVE": "Active",
    "status.RESTRICTED": "Restricted",
    "status.PAUSED": "Paused",
    "status.SUSPENDED": "Suspended",
    "payment.PENDING": "Pending",
    "payment.SUCCEEDED": "Paid",
    "payment.DECLINED": "Declined",
    "payment.REFUNDED": "Refunded",
    "payment.PARTIALLY_REFUNDED": "Partly refunded",
    "payment.DISPUTED": "Disputed",
    "payment.REQUIRES_ACTION": "Needs your action",
    "payment.CANCELED": "Canceled",
    "payment.CREATED": "Created",
    "payment.NOT_ATTEMPTED": "Not attempted",
    "payment.UNKNOWN": "Being checked",
    "payment.CHARGED_BACK": "Charged back",
    "unit.POINTS": "Points",
    "unit.MESSAGE_CREDITS": "Message credits",
    "unit.SEATS": "Seats",
    "unit.CONVERSATIONS": "Conversations",
    "method.PIX": "Pix",
    "method.BOLETO": "Boleto",
    "method.CARD": "Card",
    "method.MANUAL": "By hand",
  },
  "pt-BR": {
    "sign-in": "Entrar",
    "sign-out": "Sair",
    email: "E-mail",
    password: "Senha",
    "forgot-password": "Esqueceu a senha?",
    "send-reset": "Enviar link para redefinir",
    "reset-sent": "Se esse e-mail tiver conta aqui, o link já foi enviado.",
    "new-password": "Nova senha",
    "set-password": "Definir senha",
    "password-set": "Senha definida: entre com ela.",
    "back-to-sign-in": "Voltar para entrar",
    "no-brand": "Nenhuma marca está configurada neste endereço.",
    "no-brand-hint": "Abra o portal no domínio do parceiro (em desenvolvimento, a demonstração fica em http://demo.localhost:8000/portal/).",
    plan: "Plano",
    "no-plan": "Sem plano",
    status: "Situação",
    renews: "Renova em {date}",
    ends: "Termina em {date}",
    limits: "Limites e uso",
    balances: "Saldos",
    "buy-points": "Comprar pacote",
    "buy-plan": "Mudar de plano",
    "pay-with": "Pagar com",
    "tax-id": "CPF ou CNPJ",
    buy: "Comprar",
    "pix-scan": "Leia o QR code no app do seu banco, ou copie o código:",
    "pix-copy": "Copiar código",
    "boleto-line": "Linha digitável:",
    "open-boleto": "Abrir o boleto",
    "open-payment-page": "Pagar na página de pagamento",
    "waiting-payment": "Aguardando o pagamento…",
    paid: "Pago: obrigado!",
    "payment-failed": "O pagamento não foi aprovado.",
    payments: "Histórico de pagamentos",
    "no-payments": "Nenhum pagamento ainda.",
    preview: "Pré-visualizar",
    "preview-price": "Você pagará {price} por período; os novos limites:",
    "would-pause": "Os limites deste plano ficam abaixo do seu uso: o espaço seria pausado.",
    confirm: "Confirmar",
    "plan-changed": "Seu plano foi alterado.",
    cancel: "Cancelar plano",
    "cancel-confirm": "Cancelar ao fim do período atual?",
    "cancel-done": "Seu plano termina ao fim do período.",
    workspaces: "Espaços de trabalho",
    workspace: "Espaço de trabalho",
    wallets: "Carteiras",
    ledger: "Extrato",
    "grant-or-debit": "Creditar ou debitar unidades",
    unit: "Unidade",
    amount: "Quantidade",
    note: "Observação",
    grant: "Creditar",
    debit: "Debitar",
    "assign-plan": "Atribuir plano",
    assign: "Atribuir",
    gateway: "Meio de pagamento",
    provider: "Provedor",
    methods: "Formas",
    mode: "Modo",
    "api-key": "Chave de API",
    "webhook-secret": "Segredo do webhook",
    save: "Salvar",
    saved: "Salvo.",
    "webhook-url": "Endereço do webhook (informe ao provedor)",
    webhooks: "Entregas de webhooks",
    "no-deliveries": "Nenhuma entrega ainda.",
    back: "Voltar",
    loading: "Carregando…",
    dashboard: "Painel",
    open: "Abrir",
    "reason.NO_PLAN": "Sem plano",
    "reason.LIMIT_EXCEEDED": "Acima do limite de {limit} ({usage} de {max})",
    "reason.PAYMENT_OVERDUE": "Pagamento em atraso ({failures} tentativas falharam)",
    "status.ACTIVE": "Ativo",
    "status.RESTRICTED": "Restrito",
    "status.PAUSED": "Pausado",
    "status.SUSPENDED": "Suspenso",
    "payment.PENDING": "Pendente",
    "payment.SUCCEEDED": "Pago",
    "payment.DECLINED": "Recusado",
    "payment.REFUNDED": "Estornado",
    "payment.PARTIALLY_REFUNDED": "Estornado em parte",
    "payment.DISPUTED": "Em disputa",
    "payment.REQUIRES_ACTION": "Requer sua ação",
    "payment.CANCELED": "Cancelado",
    "payment.CREATED": "Criado",
    "payment.NOT_ATTEMPTED": "Não tentado",
    "payment.UNKNOWN": "Em verificação",
    "payment.CHARGED_BACK": "Contestado (chargeback)",
    "unit.POINTS": "Pontos",
    "unit.MESSAGE_CREDITS": "Créditos de mensagem",
    "unit.SEATS": "Assentos",
    "unit.CONVERSATIONS": "Conversas",
    "method.PIX": "Pix",
    "method.BOLETO": "Boleto",
    "method.CARD": "Cartão",
    "method.MANUAL": "Manual",
  },
} as const;

type Language = keyof typeof MESSAGES;
export type Key = keyof (typeof MESSAGES)["en"];

function chosen(): Language {
  const wanted = navigator.languages.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) {
    if (tag.toLowerCase().startsWith("pt")) return "pt-BR";
    if (tag.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

export const language: Language = chosen();

/** A message in the page's language, with {name} replaced by ``values``; an unknown key shows as itself. */
export function t(key: Key | string, values: Record<string, string | number | null | undefined> = {}): string {
  const table = MESSAGES[language] as Record<string, string>;
  const text = table[key] ?? (MESSAGES.en as Record<string, string>)[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(values[name] ?? ""));
}

type Decimal = `${number}`;

export function money(value: { amount: string; currency: string }): string {
  return new Intl.NumberFormat(language, { style: "currency", currency: value.currency }).format(
    value.amount as Decimal,
  );
}

export function quantity(value: { amount: string; unit: string }): string {
  const isCurrency = /^[A-Z]{3}$/.test(value.unit);
  if (isCurrency) return money({ amount: value.amount, currency: value.unit });
  return `${new Intl.NumberFormat(language, { maximumFractionDigits: 20 }).format(value.amount as Decimal)} ${t(`unit.${value.unit}`)}`;
}

export function date(iso: string): string {
  return new Intl.DateTimeFormat(language, { dateStyle: "medium" }).format(new Date(iso));
}

export function dateTime(iso: string): string {
  return new Intl.DateTimeFormat(language, { dateStyle: "short", timeStyle: "short" }).format(new Date(iso));
}

"""GraphQL operations and helpers for tests that sell through a partner's gateway."""

from __future__ import annotations

import uuid

CONFIGURE = """mutation($partner: ID, $provider: String!, $methods: [PaymentMethod!]!, $key: String, $secret: String) {
  configureGateway(input: {partnerId: $partner, provider: $provider, methods: $methods, apiKey: $key,
                           webhookSecret: $secret}) {
    gatewayConfig { id provider methods isActive credentialsHint webhookUrl mode } errors { code field message } } }"""
CREATE_PLAN = """mutation($name: String!, $amount: String!) {
  createPlan(input: {name: $name, interval: MONTHLY, priceAmount: $amount, priceCurrency: "BRL",
                     limits: [{name: "members", value: 10}]}) { plan { id } errors { code message } } }"""
CREATE_PACKAGE = """mutation { createCreditPackage(input: {name: "500 points", unit: "POINTS", quantity: 500,
  priceAmount: "50.00", priceCurrency: "BRL"}) { creditPackage { id quantity price { amount } } errors { code } } }"""
CHECKOUT = """mutation($ws: ID!, $item: CheckoutItemInput!, $method: PaymentMethod!, $key: String!, $card: String,
                      $saved: ID, $save: Boolean! = false, $taxId: String) {
  checkout(input: {workspaceId: $ws, item: $item, method: $method, idempotencyKey: $key, cardToken: $card,
                   savedPaymentMethodId: $saved, saveCard: $save, taxId: $taxId}) {
    payment { id status provider method amount { amount currency } payerAction declineReason refunded { amount } }
    subscription { status plan { name } }
    errors { code field message } } }"""
WORKSPACE = """query($ws: ID!) { node(id: $ws) { ... on Workspace { status
  subscription { status cancelAtPeriodEnd plan { name } }
  wallets { unit balance { amount } }
  savedPaymentMethods { id provider brand last4 }
  payments { nodes { id status provider purpose amount { amount } } } } } }"""
REFUND = """mutation($payment: ID!, $amount: String, $key: String!) {
  refundPayment(input: {paymentId: $payment, amount: $amount, idempotencyKey: $key, reason: "asked"}) {
    payment { status refunded { amount } } errors { code message } } }"""
POLICY = """mutation($policy: RefundPlanPolicy!) { setRefundPolicy(input: {planPolicy: $policy}) {
  partner { refundPlanPolicy refundTakesBackUnits } errors { code } } }"""


async def buy(shop, item: dict, method: str = "CARD", **extra) -> dict:
    variables = {"ws": shop["ws"], "item": item, "method": method, "key": extra.pop("key", str(uuid.uuid4())), **extra}
    made = await shop["client"].data(CHECKOUT, variables)
    return made["checkout"]


async def workspace_view(shop) -> dict:
    return (await shop["client"].data(WORKSPACE, {"ws": shop["ws"]}))["node"]


def points(view: dict) -> str:
    return next((w["balance"]["amount"] for w in view["wallets"] if w["unit"] == "POINTS"), "0")

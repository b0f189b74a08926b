// What the payer does next for a pending payment (a pix QR code, a boleto, the provider's card page),
// and the turn to "paid" when the provider tells whitebill, heard live through paymentChanged.
import { live } from "../api";
import { h, replace, webLink } from "../dom";
import { t } from "../i18n";

export interface PaymentView {
  id: string;
  status: string;
  payerAction: Record<string, string | null> | null;
}

const PAYMENT_CHANGED = `subscription PaymentChanged($id: ID!) {
  paymentChanged(paymentId: $id) { id status }
}`;

const FINAL_BAD = new Set(["DECLINED", "CANCELED", "NOT_ATTEMPTED"]);

function instructions(action: Record<string, string | null> | null): HTMLElement {
  const box = h("div", { class: "pay-how" });
  if (!action) return box;
  if (action.kind === "PIX") {
    const code = action.pix_payload ?? "";
    const copy = h("button", { type: "button", class: "secondary" }, t("pix-copy"));
    copy.addEventListener("click", () => void navigator.clipboard?.writeText(code));
    box.append(
      h("p", {}, t("pix-scan")),
      action.pix_qr_png_base64
        ? h("img", {
            class: "qr",
            alt: "Pix QR code",
            "data-test": "pix-qr",
            src: `data:image/png;base64,${action.pix_qr_png_base64}`,
          })
        : "",
      h("textarea", { readonly: true, rows: 3, "data-test": "pix-code" }, code),
      copy,
    );
  } else if (action.kind === "BOLETO") {
    const link = webLink(action.url);
    box.append(
      h("p", {}, t("boleto-line"), " ", h("code", { "data-test": "boleto-line" }, action.boleto_line ?? "")),
      link ? h("a", { href: link, target: "_blank", rel: "noopener" }, t("open-boleto")) : "",
    );
  } else if (webLink(action.url)) {
    // Card numbers are typed on the provider's page, never here.
    const link = webLink(action.url) as string;
    box.append(h("a", { href: link, target: "_blank", rel: "noopener", class: "button" }, t("open-payment-page")));
  } else if (action.instructions) {
    box.append(h("p", {}, action.instructions));
  }
  return box;
}

/** Shows how to pay ``payment`` and follows it until it is paid or fails; ``onSettled`` runs once then. */
export function followPayment(target: HTMLElement, payment: PaymentView, onSettled: () => void): () => void {
  const state = h("p", { class: "payment-state", "data-test": "payment-state", "data-status": payment.status });
  const show = (status: string): boolean => {
    state.dataset.status = status;
    if (status === "SUCCEEDED") {
      state.className = "payment-state ok";
      replace(state, t("paid"));
      return true;
    }
    if (FINAL_BAD.has(status)) {
      state.className = "payment-state problem";
      replace(state, t("payment-failed"));
      return true;
    }
    state.className = "payment-state waiting";
    replace(state, t("waiting-payment"));
    return false;
  };
  const how = instructions(payment.payerAction);
  replace(target, state, how);
  let settled = show(payment.status);
  if (settled) {
    how.remove();
    onSettled();
    return () => undefined;
  }
  const stop = live<{ paymentChanged: { status: string } }>(PAYMENT_CHANGED, { id: payment.id }, (data) => {
    if (settled) return;
    settled = show(data.paymentChanged.status);
    if (settled) {
      how.remove();
      stop();
      onSettled();
    }
  });
  return stop;
}

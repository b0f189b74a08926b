// The brand of the domain the portal is opened on: its name, logo and colours, from the public
// branding(domain:) query, before anyone signs in.
import { gql } from "./api";
import { h } from "./dom";

export interface Brand {
  partnerId: string;
  domain: string;
  displayName: string;
  logoUrl: string | null;
  faviconUrl: string | null;
  primaryColor: string | null;
  secondaryColor: string | null;
  supportEmail: string | null;
}

const BRANDING = `query Branding($domain: String!) {
  branding(domain: $domain) {
    partnerId
    branding { displayName logoUrl faviconUrl primaryColor secondaryColor supportEmail }
  }
}`;

interface BrandingAnswer {
  branding: { partnerId: string; branding: Omit<Brand, "partnerId" | "domain"> } | null;
}

export async function loadBrand(domain: string): Promise<Brand | null> {
  const answer = await gql<BrandingAnswer>(BRANDING, { domain });
  if (!answer.branding) return null;
  return { partnerId: answer.branding.partnerId, domain, ...answer.branding.branding };
}

/** Styles the page: colours as CSS variables (set through the CSSOM, which the page's policy allows). */
export function applyBrand(brand: Brand): void {
  document.title = brand.displayName;
  const root = document.documentElement.style;
  if (brand.primaryColor) root.setProperty("--brand", brand.primaryColor);
  if (brand.secondaryColor) root.setProperty("--brand-2", brand.secondaryColor);
  if (brand.faviconUrl) document.head.append(h("link", { rel: "icon", href: brand.faviconUrl }));
}

export function brandHeader(brand: Brand, ...extra: Node[]): HTMLElement {
  return h(
    "header",
    { class: "brand-bar" },
    brand.logoUrl ? h("img", { class: "logo", src: brand.logoUrl, alt: "" }) : null,
    h("span", { class: "brand-name", "data-test": "brand-name" }, brand.displayName),
    h("span", { class: "spacer" }),
    ...extra,
  );
}

"""Documents for the money that moves: invoices numbered in gapless series per issuer (credit notes,
receipts, taxes, coupons and the partner's monthly statement are to follow in this area)."""

"""Documents: invoices, credit notes, receipts, taxes, numbering and coupons."""

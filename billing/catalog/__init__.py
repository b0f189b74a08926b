"""What is for sale and at what price: plan families, plans, add-ons, credit packages, partner margins and exact
pricing, WhatsApp rate cards and the calling-code table."""

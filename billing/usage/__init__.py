"""What the product reports: WhatsApp message events priced by rate card (whatsapp), units consumed (units),
project credit, the platform's deductions from the centralised balance, month reports."""

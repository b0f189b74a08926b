"""Telling others: the outbox's notifications, e-mail in the partner's branding, signed partner webhooks with
leased delivery."""

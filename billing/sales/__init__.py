"""Selling: checkout, what a paid payment credits (purchases), refunds and chargebacks, provider webhooks, the
partner's centralised balance top-up."""

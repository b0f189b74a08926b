"""Balances: the ledger (the only writer of balances), wallets, credit lots and expiry, automatic top-ups and low-
balance notices."""

"""Payment gateways: one small contract (base.py), one adapter per provider, found through entry points."""

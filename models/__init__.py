"""Tortoise models: the whole data model of whitebill, one module per aggregate.

Every row that belongs to a tenant carries ``partner_id`` so that scoping is a filter on one column.
"""

MODEL_MODULES = [
    "models.tenancy",
    "models.catalog",
    "models.subscriptions",
    "models.wallets",
    "models.payments",
    "models.operations",
    "models.auto_billing",
    "models.documents",
]

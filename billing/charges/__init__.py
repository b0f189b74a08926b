"""Money taken through a gateway: the payment state table and its exactly-once delivery hook, charging (saved
cards, unknown outcomes), gateway configurations, the reconciler."""

"""The GraphQL schema: object types per domain (schema/<domain>/types.py), amounts, ids, errors,
the mutation declaration, the request context and its loaders; whitebill/schema.py merges the roots."""

"""The GraphQL schema: types, inputs, errors, loaders and the Schema object (schema.root)."""

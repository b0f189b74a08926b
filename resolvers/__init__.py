"""Resolvers, one module per area: authorise, call one billing service, map the result."""

"""Resolvers, one package per domain exporting its Query and Mutation parts: authorise, call one billing
service, map the result."""

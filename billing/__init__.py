"""The domain: one service function per action. Imports models/ and the gateway Protocol, never GraphQL."""

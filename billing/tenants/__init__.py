"""Who acts: partners and their workspaces, people and sessions, password rules and login limits, API keys, a
partner's branding."""

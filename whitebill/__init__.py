"""whitebill: the application shell (settings, database, HTTP app, worker, CLI)."""

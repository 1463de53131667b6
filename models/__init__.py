"""imitaudit's network definitions: imitators, discriminators and checkpoint IO (no imports from audit/ or service/)."""

"""Storage: portable table definitions, the database adapter and its migrations."""

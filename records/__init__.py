"""Records livecut exchanges and keeps: the wire schema, settings and the Postgres store."""

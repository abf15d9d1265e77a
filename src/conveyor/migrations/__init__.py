"""Schema migrations: which a release carries, in which phase they run, how they are judged, and when a
rollback must be refused because the schema no longer supports the release it would go back to."""

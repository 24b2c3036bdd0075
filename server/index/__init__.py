"""The on-disk index: the data directory, generations (FAISS files, SQLite catalog store,
manifest), `CURRENT`, the journal of online changes, and searching a generation."""

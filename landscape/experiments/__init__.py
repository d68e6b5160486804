"""Reference models and data, training helpers and the compression experiment."""

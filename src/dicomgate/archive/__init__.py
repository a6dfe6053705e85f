"""The archive core: blob storage and the index."""

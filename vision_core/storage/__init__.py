"""Files the suite writes and reads back: atomic writes, weights keyed by variable path, training state."""

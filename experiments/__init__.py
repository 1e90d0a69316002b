"""absl entry points of rnnlab: thin wrappers that parse flags and call one library function."""

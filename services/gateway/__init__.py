"""Gateway: the public REST API; orchestrates debates against inference and stores them."""

"""Domain events at work: the consumer that translates and publishes them, the event store, dead letters."""

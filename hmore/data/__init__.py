"""Training data: synthetic people with exact flow, real clips annotated offline, one dataset format."""

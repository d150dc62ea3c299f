"""The local stack (development tooling, never deployed): Azurite + the Azure ML emulator + devhost,
wired together the way Azure wires the real services. Used by `make run` and the end-to-end tests."""

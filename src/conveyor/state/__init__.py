"""The state store: what was deployed where, by whom, and who holds each environment."""

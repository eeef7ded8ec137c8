"""A client's session: what it holds on the server (state.py), what its statements mean
for that (hints.py, statements.py), and the sans-IO core that decides, for each client
packet and each server-connection event, what happens next (core.py)."""

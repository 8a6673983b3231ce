"""The sans-I/O session engine: protocol state, turn-taking, replies, function calls."""

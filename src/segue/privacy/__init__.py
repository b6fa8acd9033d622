"""Privacy: consent policy, data subject requests, audit."""

"""Profiles: the golden record of each person and the rules that choose its values."""

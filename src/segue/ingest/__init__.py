"""The write side: validate what sources send, apply tracking plans, append to the event log."""

"""The pure domain of segue: value types, events and ports. No I/O, no clock, no framework."""

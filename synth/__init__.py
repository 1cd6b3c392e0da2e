"""How to learn privately: encoders, the DP-SGD engine, privacy accounting, synthesizers."""

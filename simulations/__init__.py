"""Built-in simulation configs (TOML), installed as ``gmoe.simulations``."""

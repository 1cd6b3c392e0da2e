"""When, where, how reliably: the Prefect flows. Nothing imports this package."""

"""One reconcile pass, top to bottom: desired → observe → plan → execute → ready.

`plan` is pure (no I/O, no clocks, no environment); `execute` decides nothing; `converge` holds
the sequencing that the CLI and watch mode share. May import everything in reconciler/ except
`watch`."""

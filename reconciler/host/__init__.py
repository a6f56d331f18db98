"""The host side of an agent: the workspace (and what `.clawkerignore` hides), its git layout,
the host user's forwarded files and agents, and the config volume's seed. Imports only
`docker` and `naming` of reconciler."""

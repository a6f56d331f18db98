"""The control plane: a long-running host process that owns the PKI, the agent registry and the
runtime controller (enrol, dial clawkerd, drive the Session) for every agent container start."""

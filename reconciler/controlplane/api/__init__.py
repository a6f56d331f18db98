"""The CLI ↔ control plane channel: a unix socket only root (or the clawker group) can open,
and the handlers the control plane serves on it."""

"""The control plane's PKI (CA, client certificate, per-container leaves, registration tokens)
and the bootstrap material each new container receives. Only here are keys handled."""

"""Every start of an agent container goes through here: enrol the firewall, dial clawkerd over
mTLS with backoff, drive the Session to AgentReady. The only place grpc is imported."""

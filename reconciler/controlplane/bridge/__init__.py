"""The host half of the socket bridge: ssh and gpg agents, the git credential proxy and the API
relay, reached over clawkerd's Bridge stream with no port and no shared socket file."""

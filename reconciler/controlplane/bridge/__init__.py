"""The host half of the socket bridge: ssh and gpg agents and the git credential proxy, reached
through `docker exec` with no port and no shared socket file."""

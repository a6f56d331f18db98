"""The egress firewall's user-space half: allowlists, the DNS resolver, enrolment (DESIGN §8).

The kernel half (programs, maps, loader) is the top-level `bpf` package."""

"""The egress firewall's kernel half: eBPF programs, their build and loader (issue 5)."""

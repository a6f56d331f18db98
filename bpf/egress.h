/* The egress firewall's map layouts, shared by egress.bpf.c and mirrored by bpf/maps.py.
 *
 * Every field is fixed-width and every struct is padded explicitly, so the Python
 * ctypes Structures in bpf/maps.py match byte for byte (tests/unit/test_bpf_layout.py checks
 * the sizes against the BTF of the compiled object).
 */
#ifndef CLAWKER_EGRESS_H
#define CLAWKER_EGRESS_H

#include <linux/types.h>

/* policy.flags */
#define POLICY_DISABLED 0x1 /* `clawker firewall disable`: this agent is not filtered */

/* Which agent a cgroup belongs to and how it is filtered; keyed by cgroup (v2) id. */
struct policy {
	__u64 agent_id;     /* the agent's allow-map namespace (a hash of "project/agent") */
	__u64 bypass_until; /* CLOCK_BOOTTIME ns; the kernel itself ends a bypass; 0 = none */
	__u32 dns_ip4;      /* the control plane's resolver, network byte order */
	__u16 dns_port;     /* network byte order; 0 = no resolver yet (DNS is denied) */
	__u16 flags;
};

/* One IPv4 address an agent may connect to, written by the resolver. */
struct allow_key {
	__u64 agent_id;
	__u32 ip4; /* network byte order */
	__u32 pad; /* always 0 */
};

struct counters {
	__u64 allowed;
	__u64 denied;
};

/* Where a redirected DNS socket really wanted to go, keyed by socket cookie, so that
 * recvmsg can make the reply look like it came from there. */
struct dns_origin {
	__u32 orig_ip4;  /* network byte order */
	__u32 orig_port; /* network byte order, low 16 bits */
	__u32 dns_ip4;
	__u32 dns_port;
};

/* denial.hook: which program refused */
#define DENIAL_CONNECT4 1
#define DENIAL_SENDMSG4 2
#define DENIAL_CONNECT6 3
#define DENIAL_SENDMSG6 4
#define DENIAL_SOCK_CREATE 5
#define DENIAL_SETSOCKOPT 6 /* IP options or an IPv6 extension header */
#define DENIAL_WALL 7       /* a packet the per-packet wall dropped (rate-limited) */
#define DENIAL_VETH 8       /* a frame the veth wall dropped (rate-limited) */

/* The veth wall's configuration (one entry, written by the loader): which cgroup is the
 * agents' parent, and its depth in the v2 hierarchy (the root is 0). */
struct wall_config {
	__u64 parent_cgroup_id;
	__u32 parent_level;
	__u32 pad;
};

/* The rate limit on per-packet reports (one entry): at most WALL_REPORTS_PER_SECOND events
 * per second reach the ring buffer, so a flood cannot fill it. */
struct report_budget {
	__u64 window_start; /* CLOCK_MONOTONIC ns */
	__u64 used;
};

/* One refused operation, sent to the control plane through the `denials` ring buffer
 * (`clawker firewall log`). Best effort: when the buffer is full the event is dropped, the
 * refusal is not. */
struct denial {
	__u64 cgroup_id;
	__u64 agent_id; /* 0: the cgroup is not enrolled */
	__u32 ip4;      /* network byte order; a v4-mapped destination is shown here too */
	__u32 ip6[4];   /* a native IPv6 destination, network byte order */
	__u16 port;     /* network byte order */
	__u8 hook;      /* DENIAL_* */
	__u8 family;    /* AF_INET, AF_INET6, AF_PACKET, ... of the socket */
	__u32 type;     /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, ... */
	__u32 protocol; /* IPPROTO_* */
	__u32 uid;      /* of the calling task, as the container's user namespace sees it;
			 * 0xffffffff for a packet (no task is known where packets are seen) */
	__u32 pad;      /* always 0 */
	char comm[16];  /* the calling task's command name */
};

#endif

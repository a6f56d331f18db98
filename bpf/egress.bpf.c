/* clawker's egress firewall: cgroup-BPF programs attached once to the parent cgroup that every
 * agent container is created under (docs/firewall.md).
 *
 * Deny by default. A socket operation is allowed only when the calling cgroup is enrolled (the
 * policy map) and the destination is loopback, an address the agent's resolver answered (the
 * allow map, with an expiry), or DNS, which is redirected to the control plane's resolver.
 * Returning 0 from a sock_addr or sock_create hook makes the syscall fail with EPERM.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "egress.h"

#define SOCK_STREAM 1
#define SOCK_DGRAM 2

#define DENY 0
#define ALLOW 1
#define REDIRECT_DNS 2

#define DOCKER_DNS_IP4 0x7f00000b /* 127.0.0.11, Docker's embedded resolver */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id */
	__type(value, struct policy);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct allow_key);
	__type(value, __u64); /* expiry, CLOCK_MONOTONIC ns */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* agent id */
	__type(value, struct counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

/* Decisions about cgroups nobody enrolled (index 0): they are all denials. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} unenrolled SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* socket cookie */
	__type(value, struct dns_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_origin SEC(".maps");

/* Refusals for `clawker firewall log`: filled in by report_denial() only. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} denials SEC(".maps");

/* The veth wall's parent cgroup (see struct wall_config); written once by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wall_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wall_config SEC(".maps");

#define WALL_REPORTS_PER_SECOND 64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct report_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} report_budget SEC(".maps");

static __always_inline struct policy *current_policy(void)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();

	return bpf_map_lookup_elem(&policy, &cgroup_id);
}

static __always_inline void count(const struct policy *p, int allowed)
{
	struct counters *c;
	__u32 zero = 0;

	if (p)
		c = bpf_map_lookup_elem(&counters, &p->agent_id);
	else
		c = bpf_map_lookup_elem(&unenrolled, &zero);
	if (!c)
		return;
	if (allowed)
		__sync_fetch_and_add(&c->allowed, 1);
	else
		__sync_fetch_and_add(&c->denied, 1);
}

/* Tell user space what was refused (best effort: a full buffer drops the event, never the
 * refusal). `ip6` is NULL for an IPv4 destination; family, type and protocol are the
 * socket's. */
static __always_inline void report_denial(const struct policy *p, __u8 hook, __u32 ip4,
					  const __u32 *ip6, __u16 port, __u32 family, __u32 type,
					  __u32 protocol)
{
	struct denial *d = bpf_ringbuf_reserve(&denials, sizeof(*d), 0);

	if (!d)
		return;
	d->cgroup_id = bpf_get_current_cgroup_id();
	d->agent_id = p ? p->agent_id : 0;
	d->ip4 = ip4;
	if (ip6) {
		d->ip6[0] = ip6[0];
		d->ip6[1] = ip6[1];
		d->ip6[2] = ip6[2];
		d->ip6[3] = ip6[3];
	} else {
		d->ip6[0] = d->ip6[1] = d->ip6[2] = d->ip6[3] = 0;
	}
	d->port = port;
	d->hook = hook;
	d->family = (__u8)family;
	d->type = type;
	d->protocol = protocol;
	d->uid = (__u32)bpf_get_current_uid_gid();
	d->pad = 0;
	if (bpf_get_current_comm(d->comm, sizeof(d->comm)))
		d->comm[0] = 0;
	bpf_ringbuf_submit(d, 0);
}

/* Packet drops are reported at most WALL_REPORTS_PER_SECOND times a second (all CPUs
 * together, approximately: the window reset races, which only lets a few more through). */
static __always_inline int report_budget_left(void)
{
	struct report_budget *b;
	__u32 zero = 0;
	__u64 now;

	b = bpf_map_lookup_elem(&report_budget, &zero);
	if (!b)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - b->window_start > 1000000000ULL) {
		b->window_start = now;
		b->used = 0;
	}
	if (b->used >= WALL_REPORTS_PER_SECOND)
		return 0;
	__sync_fetch_and_add(&b->used, 1);
	return 1;
}

/* A dropped packet: where it went, read from its IP header at `offset` (0 in cgroup_skb, past
 * the Ethernet header at tc). No task is known here: uid is ~0 and comm is empty. */
static __always_inline void report_packet(struct __sk_buff *skb, __u64 cgroup_id, __u64 agent,
					  __u8 hook, __u32 offset, __u16 ethertype,
					  __u32 family, __u32 type, __u32 protocol)
{
	struct denial *d;
	__u8 head[40];

	if (!report_budget_left())
		return;
	d = bpf_ringbuf_reserve(&denials, sizeof(*d), 0);
	if (!d)
		return;
	__builtin_memset(d, 0, sizeof(*d));
	d->cgroup_id = cgroup_id;
	d->agent_id = agent;
	d->hook = hook;
	d->family = (__u8)family;
	d->type = type;
	d->protocol = protocol;
	d->uid = 0xffffffff;
	if (ethertype == bpf_htons(0x0800) && !bpf_skb_load_bytes(skb, offset, head, 24)) {
		__builtin_memcpy(&d->ip4, head + 16, 4);
		if ((head[0] & 0x0f) == 5 && (head[9] == IPPROTO_TCP || head[9] == IPPROTO_UDP))
			__builtin_memcpy(&d->port, head + 22, 2);
		if (!type)
			d->type = head[9] == IPPROTO_TCP ? 1 : head[9] == IPPROTO_UDP ? 2 : 3;
		if (!family)
			d->family = 2;
		if (!protocol)
			d->protocol = head[9];
	} else if (ethertype == bpf_htons(0x86DD) && !bpf_skb_load_bytes(skb, offset, head, 40)) {
		__builtin_memcpy(d->ip6, head + 24, 16);
		if (!family)
			d->family = 10;
		if (!protocol)
			d->protocol = head[6];
		if (!type)
			d->type = head[6] == IPPROTO_TCP ? 1 : head[6] == IPPROTO_UDP ? 2 : 3;
	}
	bpf_ringbuf_submit(d, 0);
}

/* The bypass deadline is on CLOCK_BOOTTIME: nothing in a container can set it (SYS_TIME sets
 * only the wall clock), and it keeps counting while the host is suspended. */
static __always_inline int unfiltered(const struct policy *p)
{
	return (p->flags & POLICY_DISABLED) || p->bypass_until > bpf_ktime_get_boot_ns();
}

/* The verdict for an IPv4 destination (ip4 and port in network byte order). */
static __always_inline int decide4(const struct policy *p, __u32 ip4, __u16 port)
{
	__u64 now = bpf_ktime_get_ns();
	struct allow_key key = {};
	__u64 *expires;

	if (unfiltered(p))
		return ALLOW;
	/* Port 53 first: the resolver at 127.0.0.11 (Docker's) is loopback but must be ours. */
	if (port == bpf_htons(53))
		return p->dns_port ? REDIRECT_DNS : DENY;
	if (ip4 == bpf_htonl(DOCKER_DNS_IP4))
		return DENY; /* its real (high) ports: dockerd would forward any name */
	if ((bpf_ntohl(ip4) >> 24) == 127)
		return ALLOW;
	key.agent_id = p->agent_id;
	key.ip4 = ip4;
	expires = bpf_map_lookup_elem(&allow, &key);
	if (expires && *expires > now)
		return ALLOW;
	return DENY;
}

static __always_inline void remember_dns(struct bpf_sock_addr *ctx, const struct policy *p,
					 __u32 ip4, __u16 port)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct dns_origin origin = {
		.orig_ip4 = ip4,
		.orig_port = port,
		.dns_ip4 = p->dns_ip4,
		.dns_port = p->dns_port,
	};

	bpf_map_update_elem(&dns_origin, &cookie, &origin, BPF_ANY);
}

/* connect4 and sendmsg4 share everything: a connected socket is checked once at connect, an
 * unconnected one on every sendmsg with an address. */
static __always_inline int filter4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct policy *p = current_policy();
	__u32 ip4 = ctx->user_ip4;
	__u16 port = (__u16)ctx->user_port;
	int verdict;

	if (!p) {
		count(0, 0);
		report_denial(0, hook, ip4, 0, port, ctx->family, ctx->type, ctx->protocol);
		return 0;
	}
	verdict = decide4(p, ip4, port);
	if (verdict == REDIRECT_DNS) {
		remember_dns(ctx, p, ip4, port);
		ctx->user_ip4 = p->dns_ip4;
		ctx->user_port = p->dns_port;
	}
	count(p, verdict != DENY);
	if (verdict == DENY)
		report_denial(p, hook, ip4, 0, port, ctx->family, ctx->type, ctx->protocol);
	return verdict != DENY;
}

SEC("cgroup/connect4")
int clawker_connect4(struct bpf_sock_addr *ctx)
{
	return filter4(ctx, DENIAL_CONNECT4);
}

SEC("cgroup/sendmsg4")
int clawker_sendmsg4(struct bpf_sock_addr *ctx)
{
	return filter4(ctx, DENIAL_SENDMSG4);
}

/* A reply from the resolver is shown as coming from the server the socket asked. */
SEC("cgroup/recvmsg4")
int clawker_recvmsg4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct dns_origin *origin = bpf_map_lookup_elem(&dns_origin, &cookie);

	if (origin && ctx->user_ip4 == origin->dns_ip4 &&
	    (__u16)ctx->user_port == (__u16)origin->dns_port) {
		ctx->user_ip4 = origin->orig_ip4;
		ctx->user_port = origin->orig_port;
	}
	return 1;
}

static __always_inline int is_v4_mapped(__u32 a0, __u32 a1, __u32 a2)
{
	return a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
}

/* IPv6: ::1 is allowed, a v4-mapped address follows the IPv4 rules (the kernel does not run the
 * connect4 hook for it), native IPv6 is refused. */
static __always_inline int filter6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct policy *p = current_policy();
	__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1];
	__u32 a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
	__u16 port = (__u16)ctx->user_port;
	__u32 dst6[4] = {a0, a1, a2, a3};
	int verdict = DENY;

	if (!p) {
		count(0, 0);
		report_denial(0, hook, 0, dst6, port, ctx->family, ctx->type, ctx->protocol);
		return 0;
	}
	if (is_v4_mapped(a0, a1, a2)) {
		verdict = decide4(p, a3, port);
		if (verdict == REDIRECT_DNS) {
			remember_dns(ctx, p, a3, port);
			ctx->user_ip6[3] = p->dns_ip4;
			ctx->user_port = p->dns_port;
		}
	} else if (a0 == 0 && a1 == 0 && a2 == 0 && a3 == bpf_htonl(1)) {
		verdict = ALLOW;
	} else if (unfiltered(p)) {
		verdict = ALLOW;
	}
	count(p, verdict != DENY);
	if (verdict == DENY) {
		if (is_v4_mapped(a0, a1, a2))
			report_denial(p, hook, a3, 0, port, ctx->family, ctx->type, ctx->protocol);
		else
			report_denial(p, hook, 0, dst6, port, ctx->family, ctx->type, ctx->protocol);
	}
	return verdict != DENY;
}

SEC("cgroup/connect6")
int clawker_connect6(struct bpf_sock_addr *ctx)
{
	return filter6(ctx, DENIAL_CONNECT6);
}

SEC("cgroup/sendmsg6")
int clawker_sendmsg6(struct bpf_sock_addr *ctx)
{
	return filter6(ctx, DENIAL_SENDMSG6);
}

/* A v4-mapped DNS reply on an IPv6 socket: the same rewrite as recvmsg4. */
SEC("cgroup/recvmsg6")
int clawker_recvmsg6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct dns_origin *origin = bpf_map_lookup_elem(&dns_origin, &cookie);

	if (origin && is_v4_mapped(ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2]) &&
	    ctx->user_ip6[3] == origin->dns_ip4 &&
	    (__u16)ctx->user_port == (__u16)origin->dns_port) {
		ctx->user_ip6[3] = origin->orig_ip4;
		ctx->user_port = origin->orig_port;
	}
	return 1;
}

/* Only TCP and UDP sockets: no raw sockets (even with CAP_NET_RAW), no ICMP "ping" sockets, no
 * SCTP or MPTCP, whose traffic the address hooks above do not see. Applies to every cgroup
 * under the parent, enrolled or not: a listener may be created before enrolment. */
SEC("cgroup/sock_create")
int clawker_sock_create(struct bpf_sock *sk)
{
	struct policy *p;

	if (sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP)
		return 1;
	if (sk->type == SOCK_DGRAM && sk->protocol == IPPROTO_UDP)
		return 1;
	p = current_policy();
	if (p && unfiltered(p))
		return 1;
	count(p, 0);
	report_denial(p, DENIAL_SOCK_CREATE, 0, 0, 0, sk->family, sk->type, sk->protocol);
	return 0;
}

/* ---- Routing headers: refused at setsockopt ----------------------------------------------
 * IPv4 options (LSRR/SSRR source routes) and IPv6 extension headers (routing, segment routing,
 * hop-by-hop, destination options) let a socket aimed at one address deliver to another. No
 * agent needs them, so every process under the parent is refused, enrolled or not, bypassed or
 * not. The same headers sent per message (cmsg) are dropped by the packet wall below. */
#define SOL_IP 0
#define SOL_IPV6 41
#define IP_OPTIONS 4
#define IPV6_2292HOPOPTS 3
#define IPV6_2292DSTOPTS 4
#define IPV6_2292RTHDR 5
#define IPV6_2292PKTOPTIONS 6
#define IPV6_HOPOPTS 54
#define IPV6_RTHDRDSTOPTS 55
#define IPV6_RTHDR 57
#define IPV6_DSTOPTS 59

SEC("cgroup/setsockopt")
int clawker_setsockopt(struct bpf_sockopt *ctx)
{
	int name = ctx->optname;
	struct policy *p;

	if (ctx->level == SOL_IP && name == IP_OPTIONS)
		goto refuse;
	if (ctx->level == SOL_IPV6 &&
	    ((name >= IPV6_2292HOPOPTS && name <= IPV6_2292PKTOPTIONS) || name == IPV6_HOPOPTS ||
	     name == IPV6_RTHDRDSTOPTS || name == IPV6_RTHDR || name == IPV6_DSTOPTS))
		goto refuse;
	return 1;
refuse:
	p = current_policy();
	count(p, 0);
	report_denial(p, DENIAL_SETSOCKOPT, 0, 0, 0, ctx->sk ? ctx->sk->family : 0, ctx->level,
		      (__u32)name);
	return 0;
}

/* ---- The packet wall: every IP packet an agent's socket sends ---------------------------
 * The hooks above decide once per socket; this one decides per packet, so a socket that was
 * allowed once (during a bypass, or by a path the socket hooks miss) carries nothing once its
 * destination is no longer allowed, and a cgroup nobody enrolled sends nothing at all.
 * Returning 0 from cgroup_skb/egress drops the packet (the sender gets EPERM). */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

/* Sockets the agent accepted (a peer connected in: the control plane dialling clawkerd), marked
 * by the sockops program when the handshake completes: their replies go back unchecked. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} inbound SEC(".maps");

SEC("sockops")
int clawker_sockops(struct bpf_sock_ops *ops)
{
	struct bpf_sock *sk = ops->sk;
	__u32 *mark;

	if (ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB || !sk)
		return 1;
	mark = bpf_sk_storage_get(&inbound, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (mark)
		*mark = 1;
	return 1;
}

static __always_inline int accepted_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 0;
	if (sk->protocol == IPPROTO_TCP_ && sk->state == BPF_TCP_LISTEN)
		return 1; /* a SYN-ACK: the kernel runs the program with the listener as the socket */
	return bpf_sk_storage_get(&inbound, sk, 0, 0) != 0;
}

struct ip4_head {
	__u8 ver_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
	__u16 sport; /* the first four bytes after the header, when it has no options */
	__u16 dport;
};

static __always_inline int packet4_allowed(struct __sk_buff *skb, const struct policy *p)
{
	struct allow_key key = {};
	struct ip4_head ip;
	__u64 *expires;
	__u32 dst;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		return 0;
	if (ip.ver_ihl != 0x45)
		return 0; /* IP options: a source route's final hop is not the header's destination */
	dst = ip.daddr;
	if (dst == bpf_htonl(DOCKER_DNS_IP4))
		return 0;
	if ((bpf_ntohl(dst) >> 24) == 127)
		return 1;
	if (dst == p->dns_ip4 && p->dns_port && ip.dport == p->dns_port &&
	    (ip.protocol == IPPROTO_TCP_ || ip.protocol == IPPROTO_UDP_) &&
	    !(ip.frag_off & bpf_htons(0x1fff)))
		return 1;
	key.agent_id = p->agent_id;
	key.ip4 = dst;
	expires = bpf_map_lookup_elem(&allow, &key);
	return expires && *expires > bpf_ktime_get_ns();
}

struct ip6_head {
	__u32 ver_class_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
};

/* Only ::1, and only plain TCP or UDP: an extension header (a routing header above all) could
 * carry the packet past its first destination. */
static __always_inline int packet6_allowed(struct __sk_buff *skb)
{
	struct ip6_head ip;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		return 0;
	if (ip.nexthdr != IPPROTO_TCP_ && ip.nexthdr != IPPROTO_UDP_)
		return 0;
	return ip.daddr[0] == 0 && ip.daddr[1] == 0 && ip.daddr[2] == 0 &&
	       ip.daddr[3] == bpf_htonl(1);
}

SEC("cgroup_skb/egress")
int clawker_egress_skb(struct __sk_buff *skb)
{
	__u64 cgroup_id = bpf_skb_cgroup_id(skb);
	struct policy *p = bpf_map_lookup_elem(&policy, &cgroup_id);

	int allowed = 0;

	if (!p) {
		report_packet(skb, cgroup_id, 0, DENIAL_WALL, 0, (__u16)skb->protocol, 0, 0, 0);
		return 0;
	}
	if (unfiltered(p) || accepted_socket(skb))
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		allowed = packet4_allowed(skb, p);
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		allowed = packet6_allowed(skb);
	if (!allowed)
		report_packet(skb, cgroup_id, p->agent_id, DENIAL_WALL, 0, (__u16)skb->protocol, 0, 0,
			      0);
	return allowed;
}

/* ---- The veth wall: every frame a container under the parent puts on its veth ----------
 * Attached by the control plane (tc clsact ingress, direct action) to the host-side end of the
 * veth of every container whose cgroup parent is ours, enrolled or not. At that point the
 * frame still carries the socket that sent it (veth keeps skb->sk; the host's IP stack drops
 * it later), so a packet socket is seen here, which no cgroup-BPF hook ever sees:
 * - a frame from a socket whose cgroup is under the parent: passed only when that cgroup is
 *   enrolled and the socket is an inet one (or a TCP request or time-wait socket) (TCP and UDP, which the packet wall above judges
 *   per packet), or the agent is unfiltered; a packet socket's frames are dropped, enrolled
 *   or not;
 * - any other frame passes: one with no socket (the kernel's own: ARP, neighbour discovery,
 *   ICMP errors, resets, which no process can author without a socket) or with a socket of a
 *   cgroup outside the parent (the wall is attached to every veth on clawker's network, and
 *   is nothing to a container that is not under the parent). */
#define AF_INET_ 2
#define AF_INET6_ 10
#define ETH_HLEN_ 14

SEC("tc")
int clawker_veth_wall(struct __sk_buff *skb)
{
	struct bpf_sock *any = skb->sk;
	struct wall_config *cfg;
	struct bpf_sock *sk;
	struct policy *p;
	__u32 zero = 0;
	__u64 cgroup_id;

	cfg = bpf_map_lookup_elem(&wall_config, &zero);
	if (!cfg || !cfg->parent_cgroup_id)
		return TC_ACT_SHOT; /* not configured yet: nothing is known, nothing passes */
	if (any &&
	    bpf_skb_ancestor_cgroup_id(skb, (int)cfg->parent_level) == cfg->parent_cgroup_id) {
		cgroup_id = bpf_skb_cgroup_id(skb);
		p = bpf_map_lookup_elem(&policy, &cgroup_id);
		sk = bpf_sk_fullsock(any);
		if (p && unfiltered(p))
			return TC_ACT_OK;
		/* No full socket: a TCP request or time-wait socket, inet by construction (a
		 * SYN-ACK's is the request socket; its cgroup is the listener's). */
		if (p && (!sk || sk->family == AF_INET_ || sk->family == AF_INET6_))
			return TC_ACT_OK;
		count(p, 0); /* a frame is a discrete act (no retransmission): counted in DENIED */
		report_packet(skb, cgroup_id, p ? p->agent_id : 0, DENIAL_VETH, ETH_HLEN_,
			      (__u16)skb->protocol, sk ? sk->family : 0, sk ? sk->type : 0,
			      sk ? sk->protocol : 0);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Proprietary";

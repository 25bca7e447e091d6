/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The XDP load balancer's wire format: keys and values of the emon_lb_* maps, shared by
 * bpf/lb.bpf.c and user space (daemon/src/lb/wire.ts mirrors every struct here;
 * test/unit/layout.test.ts checks the mirror against the BTF of build/bpf/lb.bpf.o).
 * Fixed-width types only, explicit padding, no implicit holes.
 *
 * Byte order: addresses and ports that the data path compares with packet bytes are kept
 * in network byte order (no swapping per packet); everything else is host order. IPv4
 * addresses use the first 4 bytes of a 16-byte array and the other 12 are zero.
 *
 * The LB is its own component (lb.bpf.o) with its own maps: it shares nothing with the
 * monitor's objects, so either can be upgraded or torn down alone. */
#ifndef EMON_LB_H
#define EMON_LB_H

/* Bump when a key or value layout below changes. The daemon stores it in emon_lb_cfg and
 * refuses pinned LB maps of another layout instead of misreading them. */
#define EMON_LB_LAYOUT_VERSION 1

/* Maglev lookup table size per VIP: a prime, so every backend's skip is coprime with it
 * and each backend's permutation visits every slot. 65537 slots keep the imbalance
 * between equal-weight backends under 1% for up to a few hundred backends. */
#define EMON_LB_RING_SIZE 65537

/* Default capacities (max_entries). The daemon may size the maps differently at first
 * load (Deployment mapSizes); user space always reads the real sizes back. */
#define EMON_LB_MAX_VIPS      32     /* emon_lb_ring holds 2 tables (double buffer) per VIP */
#define EMON_LB_MAX_BACKENDS  4096   /* backend ids 1..4095 (id 0 means "no backend") */
#define EMON_LB_MAX_CONNS     262144 /* LRU connection table */
#define EMON_LB_MAX_LONG      65536  /* long-lived flows kept out of LRU eviction */
#define EMON_LB_MAX_NAT       131072 /* NAT reverse table (entries for nat-mode flows) */
#define EMON_LB_MAX_RULES     1024   /* drop-list rule ids */
#define EMON_LB_MAX_IFADDRS   256    /* (ifindex, family) -> balancer's own address */

/* A VIP: emon_lb_vips key. */
struct emon_lb_vip_key {
	__u8  addr[16];
	__u16 port;        /* network byte order */
	__u8  proto;       /* IPPROTO_TCP or IPPROTO_UDP */
	__u8  family;      /* AF_INET (2) or AF_INET6 (10) */
};

enum emon_lb_mode {
	EMON_LB_MODE_NAT = 1, /* destination -> backend, source -> balancer's own address:port */
	EMON_LB_MODE_DSR = 2, /* MAC rewrite only: the backend holds the VIP and answers directly */
};

/* emon_lb_vips value: what the data path needs per VIP, read on every packet. */
struct emon_lb_vip {
	__u32 slot;        /* index into emon_lb_vstats and emon_lb_vipcfg; ring base = slot * 2 */
	__u32 gen;         /* Maglev table generation: +1 on every table change (shown per flow) */
	__u8  mode;        /* enum emon_lb_mode */
	__u8  ring;        /* which of the VIP's two tables is live (0 or 1) */
	__u8  _pad[2];
};

/* emon_lb_backends value (array indexed by backend id). A backend belongs to one VIP. */
struct emon_lb_backend {
	__u8  addr[16];
	__u16 port;        /* network byte order */
	__u8  family;
	__u8  flags;       /* EMON_LB_BE_* */
	__u16 vip;         /* slot of its VIP */
	__u16 weight;      /* 1..1000; user space only (Maglev table generation) */
	__u32 egress;      /* ifindex user space found toward the backend (XDP for NAT replies) */
	__u32 _pad;
};

#define EMON_LB_BE_IN_USE   (1U << 0) /* slot holds a backend */
#define EMON_LB_BE_DRAINING (1U << 1) /* out of the table; existing flows keep it */
#define EMON_LB_BE_DOWN     (1U << 2) /* health check failing; out of the table */

/* A flow as the balancer sees it on the wire: emon_lb_conns / emon_lb_long key (client ->
 * VIP) and emon_lb_nat key (backend -> balancer, a NAT reply). */
struct emon_lb_flow_key {
	__u8  saddr[16];
	__u8  daddr[16];
	__u16 sport;       /* network byte order */
	__u16 dport;       /* network byte order */
	__u8  proto;
	__u8  family;
	__u8  _pad[2];
};

enum emon_lb_how {
	EMON_LB_HOW_MAGLEV   = 1, /* new flow: the VIP's Maglev table chose the backend */
	EMON_LB_HOW_RESTORED = 2, /* LRU entry was evicted; restored from emon_lb_long */
	EMON_LB_HOW_RESCHED  = 3, /* old backend gone (or a new SYN met a draining/down one): chosen again */
};

/* emon_lb_conns / emon_lb_long value: which backend a flow is pinned to, and why. */
struct emon_lb_conn {
	__u32 backend;     /* backend id */
	__u32 gen;         /* VIP table generation when the backend was chosen */
	__u64 created_ns;  /* CLOCK_MONOTONIC (coarse) when chosen */
	__u64 last_ns;     /* last packet, refreshed at most once per EMON_LB_TOUCH_NS */
	__u64 touch;       /* data path only: last refresh in ticks (jiffies, or ns if HZ is unknown) */
	__u16 nat_port;    /* nat mode: balancer-side source port (network order); 0 in dsr */
	__u8  how;         /* enum emon_lb_how */
	__u8  flags;       /* EMON_LB_CONN_* */
	__u16 vip;         /* VIP slot: an established flow needs no VIP lookup */
	__u8  _pad[2];
};

#define EMON_LB_CONN_LONG (1U << 0) /* copied into emon_lb_long (survives LRU eviction) */
#define EMON_LB_CONN_DSR  (1U << 1) /* the VIP is in dsr mode */

/* Refresh conn last_ns (and check promotion) at most this often per flow. The data path
 * measures the interval in "ticks": jiffies where libbpf can tell the kernel's HZ (the
 * verifier turns bpf_jiffies64() into a plain load, while a clock helper call was a tenth
 * of the per-packet cost), nanoseconds otherwise. */
#define EMON_LB_TOUCH_NS 1000000000ULL

/* emon_lb_nat value: the client side of a nat-mode flow, found from its reply. */
struct emon_lb_nat {
	__u8  caddr[16];   /* client */
	__u8  vaddr[16];   /* VIP */
	__u16 cport;       /* network byte order */
	__u16 vport;       /* network byte order */
	__u32 backend;     /* backend id (per-backend reply counters) */
	__u32 vip;         /* VIP slot (per-VIP reply counters) */
	__u32 flags;       /* EMON_LB_NAT_* */
	__u64 last_ns;     /* last reply (or creation), CLOCK_MONOTONIC (coarse) */
	__u64 touch;       /* data path only: last refresh in ticks */
};

/* The backend answered at least once. Entries without it hold a port for a flow that may
 * never start (a SYN flood): the daemon collects them after a short embryonic timeout. */
#define EMON_LB_NAT_REPLIED (1U << 0)

/* emon_lb_ifaddr key/value: the balancer's own address on an interface, used as the
 * source of nat-mode packets leaving through it (user space fills it from the
 * interface addresses; bpf_fib_lookup picks the interface). */
struct emon_lb_if_key {
	__u32 ifindex;
	__u8  family;
	__u8  _pad[3];
};

struct emon_lb_addr {
	__u8 addr[16];
};

/* Per-VIP (emon_lb_vstats, by slot) and per-backend (emon_lb_bstats, by id) per-CPU
 * counters. Bytes are IP-layer (IP header + payload). */
struct emon_lb_ctr {
	__u64 packets;     /* client -> backend */
	__u64 bytes;
	__u64 rpackets;    /* backend -> client replies translated by the balancer (nat mode) */
	__u64 rbytes;
	__u64 flows;       /* new flows scheduled (Maglev decisions) */
};

/* Drop list. emon_lb_drop4 / emon_lb_drop6 (LPM tries) match the source address; the
 * value is a rule id (counters in emon_lb_dcnt). */
struct emon_lb_lpm4 {
	__u32 prefixlen;
	__u8  addr[4];
};

struct emon_lb_lpm6 {
	__u32 prefixlen;
	__u8  addr[16];
};

/* emon_lb_dproto key: drop by protocol, optionally by destination port (TCP/UDP) or
 * ICMP type. Value: rule id. */
struct emon_lb_proto_key {
	__u8  family;
	__u8  proto;
	__u8  kind;        /* EMON_LB_PK_* */
	__u8  _pad;
	__u16 value;       /* destination port or ICMP type, host byte order; 0 for ANY */
	__u8  _pad2[2];
};

#define EMON_LB_PK_ANY  0 /* every packet of the protocol */
#define EMON_LB_PK_PORT 1 /* TCP/UDP destination port */
#define EMON_LB_PK_TYPE 2 /* ICMP/ICMPv6 type */

/* emon_lb_dcnt value (per-CPU, by rule id). */
struct emon_lb_rule_ctr {
	__u64 packets;
	__u64 bytes;       /* IP-layer */
};

/* emon_lb_cfg[0]: runtime settings written by the daemon. */
struct emon_lb_config {
	__u64 promote_ns;   /* flows older than this are copied into emon_lb_long (0: never) */
	__u16 nat_port_min; /* nat-mode source ports, host byte order, inclusive; keep this */
	__u16 nat_port_max; /*   range outside ip_local_port_range so local sockets never collide */
	__u32 flags;        /* EMON_LB_CFG_* */
	__u32 layout;       /* EMON_LB_LAYOUT_VERSION of whoever created the maps */
	__u32 nh_gen;       /* bumped by the daemon when backends or addresses change: */
	                    /*   every cached next hop (emon_lb_nhc) is then stale */
};

/* emon_lb_nhc value (per-CPU array by backend id): the next hop toward a backend as
 * bpf_fib_lookup found it. The forwarding path reuses it instead of walking the FIB for
 * every packet (the FIB walk was the largest part of the per-packet cost) until it expires
 * (EMON_LB_NH_TTL_NS: routing and neighbour changes take effect within that time) or the
 * daemon bumps emon_lb_config.nh_gen. Packets larger than `mtu` take the full lookup,
 * which answers "fragmentation needed". */
struct emon_lb_nh {
	__u64 expires;      /* in ticks (jiffies, or ns if HZ is unknown) */
	__u32 ifindex;      /* egress interface; 0: empty */
	__u32 gen;          /* emon_lb_config.nh_gen when filled */
	__u16 mtu;          /* route MTU toward the next hop */
	__u8  dmac[6];
	__u8  smac[6];
	__u8  flags;        /* EMON_LB_NH_* */
	__u8  _pad;
	__u8  laddr[16];    /* the balancer's own address on ifindex (nat source) */
};

#define EMON_LB_NH_ONLINK (1U << 0) /* the backend itself is the next hop (dsr possible) */
#define EMON_LB_NH_LADDR  (1U << 1) /* laddr is set */
#define EMON_LB_NH_TTL_NS 1000000000ULL

#define EMON_LB_CFG_DROP4  (1U << 0) /* emon_lb_drop4 has rules: look it up */
#define EMON_LB_CFG_DROP6  (1U << 1) /* emon_lb_drop6 has rules */
/* emon_lb_dproto has rules for this protocol (one bit each, so that a rule for ICMP echo
 * costs TCP and UDP packets nothing) */
#define EMON_LB_CFG_DP_TCP   (1U << 2)
#define EMON_LB_CFG_DP_UDP   (1U << 3)
#define EMON_LB_CFG_DP_ICMP  (1U << 4) /* ICMP and ICMPv6 */
#define EMON_LB_CFG_DP_OTHER (1U << 5)

/* Tries to find a free NAT port before giving up (EMON_LB_DROP_NAT_PORTS). */
#define EMON_LB_NAT_TRIES 8

/* jhash seeds. The flow hash is mirrored in daemon/src/lb/hash.ts (to predict and explain
 * Maglev decisions), so it is part of the wire format. */
#define EMON_LB_FLOW_SEED 0x1b5eed01U
#define EMON_LB_NAT_SEED  0x1b5eed02U

/* emon_lb_vipcfg value (array by VIP slot): what user space needs to rebuild a VIP after
 * a restart. The data path never reads it. */
struct emon_lb_vipcfg {
	struct emon_lb_vip_key key;
	__u32 ifindex;       /* interface named with --interface (0: the daemon's defaults) */
	char  ifname[16];
	__u8  in_use;
	__u8  mode;          /* enum emon_lb_mode */
	__u8  hc_type;       /* EMON_LB_HC_* */
	__u8  hc_rise;       /* successes to mark a backend up */
	__u8  hc_fall;       /* failures to mark it down */
	__u8  _pad;
	__u16 hc_port;       /* 0: the backend's port */
	__u32 hc_interval_ms;
	__u32 hc_timeout_ms;
	char  hc_path[64];   /* HTTP GET path */
	__u64 decl_hash;     /* hash of the config-file declaration last applied (0: added live) */
	__u64 created_ns;    /* CLOCK_REALTIME */
};

#define EMON_LB_HC_NONE 0
#define EMON_LB_HC_TCP  1
#define EMON_LB_HC_HTTP 2

/* Indexes into emon_lb_stats (per-CPU u64). Each enumerator is its user-space name (LB_COUNTERS
 * in daemon/src/contract/lb.ts) in C: EMON_LB_STAT_CONN_NEW is connNew (test/unit/daemon/lb/wire.test.ts). */
enum emon_lb_stat {
	EMON_LB_STAT_PASS = 0,         /* packets not for a VIP, passed untouched */
	EMON_LB_STAT_CONN_NEW,         /* entries inserted into emon_lb_conns (new + restored) */
	EMON_LB_STAT_CONN_RESCHEDULED, /* flows whose backend was gone/draining on a SYN: chosen again */
	EMON_LB_STAT_CONN_MIDFLOW_MISS, /* TCP non-SYN packets of unknown flows (evicted or older than the LB) */
	EMON_LB_STAT_CONN_INSERT_FAIL, /* conn inserts the kernel refused */
	EMON_LB_STAT_LONG_HIT,         /* flows restored from emon_lb_long after LRU eviction */
	EMON_LB_STAT_LONG_PROMOTE,     /* flows copied into emon_lb_long */
	EMON_LB_STAT_LONG_FULL,        /* promotions refused: emon_lb_long full */
	EMON_LB_STAT_NAT_NEW,          /* NAT reverse entries created */
	EMON_LB_STAT_NAT_REUSE,        /* NAT entries reused (conn entry had been evicted) */
	EMON_LB_STAT_NAT_COLLIDE,      /* NAT port tries that hit a taken port */
	EMON_LB_STAT_NAT_REPLY,        /* replies translated back to the client */
	EMON_LB_STAT_ICMP_FORWARDED,   /* ICMP errors about a reply, forwarded to the flow's backend */
	EMON_LB_STAT_ICMP_REPLIED,     /* ICMP errors from the backend side, translated to the client */
	EMON_LB_STAT_ICMP_TOO_BIG_SENT, /* "fragmentation needed"/"packet too big" sent to a client */
	EMON_LB_STAT_CONN_DELETED,     /* conn entries deleted by user space (written by the daemon, CPU 0 slot) */
	EMON_LB_STAT_NEIGH_PASS,       /* translated replies handed to the stack: the client's MAC was unknown */
	EMON_LB_STAT_MAX = 32,
};

/* Indexes into emon_lb_drops (per-CPU u64): why a packet was dropped. */
enum emon_lb_drop {
	EMON_LB_DROP_DROPLIST = 0,     /* matched a drop-list rule (per-rule counts in emon_lb_dcnt) */
	EMON_LB_DROP_NO_BACKEND,       /* the VIP has no usable backend */
	EMON_LB_DROP_BAD_BACKEND,      /* table pointed at an unused backend slot (during an update) */
	EMON_LB_DROP_FRAGMENT,         /* IP fragment to a VIP (ports unknown in later fragments) */
	EMON_LB_DROP_IP_OPTIONS,       /* IPv4 options / IPv6 extension headers on VIP traffic */
	EMON_LB_DROP_MALFORMED,        /* truncated transport header on VIP traffic */
	EMON_LB_DROP_TTL,              /* TTL / hop limit would reach 0 */
	EMON_LB_DROP_NO_ROUTE,         /* bpf_fib_lookup: no route (unreachable, blackhole, prohibit) */
	EMON_LB_DROP_NO_NEIGH,         /* bpf_fib_lookup: next hop's MAC unknown (the daemon probes backends) */
	EMON_LB_DROP_FWD_DISABLED,     /* bpf_fib_lookup: forwarding disabled on the interface */
	EMON_LB_DROP_TOO_BIG,          /* larger than the path MTU (an ICMP too-big was sent if DF) */
	EMON_LB_DROP_NO_SNAT_ADDR,     /* nat mode: no own address on the egress interface */
	EMON_LB_DROP_NAT_PORTS,        /* nat mode: no free source port after EMON_LB_NAT_TRIES */
	EMON_LB_DROP_NAT_FULL,         /* nat mode: reverse table full */
	EMON_LB_DROP_DSR_OFF_LINK,     /* dsr mode: backend not on a directly connected network */
	EMON_LB_DROP_ICMP_UNKNOWN,     /* ICMP error about a VIP flow the balancer does not know */
	EMON_LB_DROP_REDIRECT,         /* bpf_redirect refused the egress interface */
	EMON_LB_DROP_MAX = 32,
};

#endif /* EMON_LB_H */

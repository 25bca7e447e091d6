/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Bob Jenkins' hash as the kernel's <linux/jhash.h> computes it. Feature-free (the load
 * balancer's flow hash is built on it and mirrored in daemon/src/lb/hash.ts). */
#ifndef EMON_JHASH_BPF_H
#define EMON_JHASH_BPF_H

#include "vmlinux.h"

static __always_inline __u32 rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

/* Bob Jenkins' jhash_3words, as in the kernel's <linux/jhash.h>. */
static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

#endif /* EMON_JHASH_BPF_H */

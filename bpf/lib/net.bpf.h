/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Protocol numbers that are macros in the kernel's headers, so vmlinux.h lacks them. */
#ifndef EMON_NET_BPF_H
#define EMON_NET_BPF_H

#define IPPROTO_HOPOPTS   0
#define IPPROTO_ROUTING   43
#define IPPROTO_FRAGMENT  44
#define IPPROTO_ICMPV6    58
#define IPPROTO_NONE      59
#define IPPROTO_DSTOPTS   60
#define IPPROTO_MH        135

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

#endif /* EMON_NET_BPF_H */

// SPDX-License-Identifier: Apache-2.0
// The load balancer's BPF component: one object (build/bpf/lb.bpf.o), separate from the
// monitor's, so either can be upgraded or torn down alone. Names match bpf/lb.bpf.c.
import type { ComponentDef } from '../bpf/deployment.js';

export const LB_PROG = {
  xdp: 'xdp_lb',
} as const;

export const LB_MAP = {
  vips: 'emon_lb_vips',
  ring: 'emon_lb_ring',
  backends: 'emon_lb_backend',
  conns: 'emon_lb_conns',
  long: 'emon_lb_long',
  nat: 'emon_lb_nat',
  ifaddr: 'emon_lb_ifaddr',
  nhc: 'emon_lb_nhc',
  vports: 'emon_lb_vports',
  vstats: 'emon_lb_vstats',
  bstats: 'emon_lb_bstats',
  stats: 'emon_lb_stats',
  drops: 'emon_lb_drops',
  drop4: 'emon_lb_drop4',
  drop6: 'emon_lb_drop6',
  dproto: 'emon_lb_dproto',
  dcnt: 'emon_lb_dcnt',
  cfg: 'emon_lb_cfg',
  vipcfg: 'emon_lb_vipcfg',
} as const;

export type LbMapName = (typeof LB_MAP)[keyof typeof LB_MAP];

/** xdp_lb is loaded and pinned at deploy time and attached per interface by LbManager. */
export const LB_COMPONENT: ComponentDef = {
  name: 'lb',
  file: 'lb.bpf.o',
  groups: [
    {
      capability: 'xdp-lb',
      required: true,
      alternatives: [{ id: 'xdp', label: 'xdp (per interface, pinned link)', attach: [{ prog: LB_PROG.xdp, kind: 'xdp' }] }],
    },
  ],
};

// SPDX-License-Identifier: Apache-2.0
// `ebpfmonctl lb ...`: placeholder until the load balancer's RPC methods are wired.
import { Command } from 'commander';

export function lbCommand(): Command {
  return new Command('lb').description('manage the XDP load balancer');
}

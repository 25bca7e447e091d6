// SPDX-License-Identifier: Apache-2.0
// raiseMtu (capture/tunnels.ts) against a device model that enforces its own limit as the
// kernel does (EINVAL over it): the device ends at exactly that limit whether or not the
// kernel reports it (a GRE tunnel's max_mtu reads 0 on 6.1), in at most 16 requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { raiseMtu } from '../../../../daemon/src/capture/tunnels.js';
import { NetlinkError } from '../../../../daemon/src/net/netlink.js';

function device(limit: number, mtu: number) {
  const d = { mtu, calls: 0 };
  const set = (_ifindex: number, m: number) => {
    d.calls++;
    if (m > limit) throw new NetlinkError('setting the MTU', 22);
    d.mtu = m;
  };
  return { d, set };
}

test('raiseMtu: the largest MTU the device accepts, found by trying when the kernel does not say', () => {
  for (const [limit, start] of [[65_497, 1462], [65_493, 1462], [65_535, 1500], [1463, 1462], [1462, 1462], [9000, 1280]]) {
    const { d, set } = device(limit!, start!);
    assert.equal(raiseMtu({ ifindex: 7, mtu: start!, maxMtu: 0 }, set), limit, `limit ${limit}`);
    assert.equal(d.mtu, limit, `the device is left at ${limit}`);
    assert.ok(d.calls <= 16, `${d.calls} requests`);
  }
});

test('raiseMtu: the reported limit is used at once; errors other than EINVAL are not swallowed', () => {
  const { d, set } = device(65_000, 1462);
  assert.equal(raiseMtu({ ifindex: 7, mtu: 1462, maxMtu: 65_000 }, set), 65_000);
  assert.deepEqual(d, { mtu: 65_000, calls: 1 });
  assert.throws(() => raiseMtu({ ifindex: 7, mtu: 1462 }, () => {
    throw new NetlinkError('setting the MTU', 1 /* EPERM */);
  }), /EPERM/);
});

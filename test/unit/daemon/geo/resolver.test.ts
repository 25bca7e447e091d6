// SPDX-License-Identifier: Apache-2.0
// The geo resolver against MMDB files that MaxMind's own writer (Perl) built from records
// the test chose: every field must come back exactly as written; special-purpose ranges
// (stated here address by address, from the RFCs, independently of ranges.ts) are
// labelled and never looked up in the default databases; the user's databases come first.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GeoResolver, GeoInputError } from '../../../../daemon/src/geo/resolver.js';
import { GeoDatabaseError } from '../../../../daemon/src/geo/databases.js';
import { cityRecord, writeMmdb } from '../../../helpers/mmdb.js';

const NULLS = { country: null, city: null, lat: null, lon: null, asn: null, org: null, label: null };

// What the test databases say, and so what must come back.
const REYKJAVIK = { city: 'Reykjavík', country: 'IS', lat: 64.1466, lon: -21.9426, asn: 64512, org: 'ebpfmon test lab' };
const NAIROBI = { city: 'Nairobi', country: 'KE', lat: -1.286389, lon: 36.817223 };
const OSAKA = { city: 'Ōsaka', country: 'JP', lat: 34.693737, lon: 135.502167 };

describe('geo resolver', () => {
  let dir: string;
  let cityDb: string;
  let asnDb: string;
  let defaultDb: string;
  const open: GeoResolver[] = [];
  const resolver = async (o: Parameters<typeof GeoResolver.open>[0]) => {
    const r = await GeoResolver.open(o);
    open.push(r);
    return r;
  };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-geo-'));
    cityDb = writeMmdb([
      { network: '198.18.1.0/24', data: cityRecord(REYKJAVIK) },
      { network: '2001:db8:1::/48', data: cityRecord(NAIROBI) },
      { network: '81.2.69.0/24', data: cityRecord(OSAKA) },
      // A site mapped by a user into private space, and a record with only a country.
      { network: '10.20.0.0/16', data: cityRecord({ city: 'Lab B', country: 'FR', lat: 45.75, lon: 4.85 }) },
      { network: '93.184.216.0/24', data: { country: { iso_code: 'US' } } },
    ], { dir, name: 'city.mmdb' });
    asnDb = writeMmdb([
      { network: '81.2.69.0/24', data: { autonomous_system_number: 20712, autonomous_system_organization: 'Andrews & Arnold Ltd' } },
      { network: '93.184.216.0/24', data: { autonomous_system_number: 15133, autonomous_system_organization: 'Edgecast Inc.' } },
      { network: '2001:db8:1::/48', data: { autonomous_system_number: 4200000000, autonomous_system_organization: 'Four-byte AS' } },
    ], { dir, name: 'asn.mmdb', databaseType: 'ebpfmon-Test-ASN' });
    // Stands in for the bundled default: covers every IPv4 address and large IPv6 blocks
    // with a country nobody would mistake, so any lookup that reaches it shows.
    defaultDb = writeMmdb(['0.0.0.0/1', '128.0.0.0/1', '100::/8', '2000::/3', 'f000::/5', 'f800::/6', 'fc00::/6'].map((network) => ({ network, data: { country_code: 'AQ' } })),
      { dir, name: 'default.mmdb', databaseType: 'ebpfmon-Test-Country' });
  });
  after(() => {
    for (const r of open) r.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a city database (GeoIP2 layout): country, city, lat, lon come back exactly, IPv4 and IPv6', async () => {
    const r = await resolver({ databases: [cityDb], defaultDatabases: false });
    assert.deepEqual(r.lookup('81.2.69.160'), { ...NULLS, city: OSAKA.city, country: OSAKA.country, lat: OSAKA.lat, lon: OSAKA.lon });
    assert.deepEqual(r.lookup('81.2.69.0'), r.lookup('81.2.69.255'), 'the whole /24');
    assert.deepEqual(r.lookup('2001:db8:1:ffff::42'), { ...NULLS, ...NAIROBI, label: 'documentation' });
    assert.deepEqual(r.lookup('93.184.216.34'), { ...NULLS, country: 'US' }, 'a country-only record gives no coordinates');
    assert.deepEqual(r.lookup('81.2.70.1'), NULLS, 'outside every network');
  });

  test('a city and an ASN database together: asn and org exact, merged per field', async () => {
    const r = await resolver({ databases: [cityDb, asnDb], defaultDatabases: false });
    assert.deepEqual(r.lookup('81.2.69.1'), { ...NULLS, city: OSAKA.city, country: 'JP', lat: OSAKA.lat, lon: OSAKA.lon, asn: 20712, org: 'Andrews & Arnold Ltd' });
    assert.deepEqual(r.lookup('93.184.216.34'), { ...NULLS, country: 'US', asn: 15133, org: 'Edgecast Inc.' });
    assert.equal(r.lookup('2001:db8:1::1').asn, 4200000000, '4-byte AS numbers');
    assert.deepEqual(r.databases().map((d) => [path.basename(d.path), d.source, d.databaseType]), [['city.mmdb', 'user', 'ebpfmon-Test-City'], ['asn.mmdb', 'user', 'ebpfmon-Test-ASN']]);
  });

  test('other layouts: ip-location-db (flat), IPinfo, GeoIP2 Enterprise traits', async () => {
    const flat = writeMmdb([
      { network: '5.6.7.0/24', data: { country_code: 'NZ', city: 'Wellington', latitude: -41.2866, longitude: 174.7756 } },
      { network: '5.6.8.0/24', data: { country: 'br', asn: 'AS28573', as_name: 'Claro NXT' } },
    ], { dir, name: 'flat.mmdb', types: { city: 'utf8_string', country: 'utf8_string' } });
    const traits = writeMmdb([
      { network: '5.6.9.0/24', data: { country: { iso_code: 'CA' }, traits: { autonomous_system_number: 577, autonomous_system_organization: 'Bell Canada' } } },
    ], { dir, name: 'traits.mmdb' });
    const r = await resolver({ databases: [flat, traits], defaultDatabases: false });
    assert.deepEqual(r.lookup('5.6.7.8'), { ...NULLS, country: 'NZ', city: 'Wellington', lat: -41.2866, lon: 174.7756 });
    assert.deepEqual(r.lookup('5.6.8.8'), { ...NULLS, country: 'BR', asn: 28573, org: 'Claro NXT' });
    assert.deepEqual(r.lookup('5.6.9.9'), { ...NULLS, country: 'CA', asn: 577, org: 'Bell Canada' });
  });

  test("the user's databases come first, even for special ranges: a 198.18 lab address is placed in a city", async () => {
    const r = await resolver({ databases: [cityDb], defaults: [{ path: defaultDb }] });
    assert.deepEqual(r.lookup('198.18.1.2'), { ...NULLS, ...REYKJAVIK, label: 'benchmarking' });
    assert.deepEqual(r.lookup('10.20.3.4'), { ...NULLS, city: 'Lab B', country: 'FR', lat: 45.75, lon: 4.85, label: 'private' });
    assert.deepEqual(r.lookup('10.21.0.1'), { ...NULLS, label: 'private' }, 'private, not mapped by the user, not looked up in the default');
    // Fields the user's files leave empty are filled from the default for ordinary addresses.
    assert.deepEqual(r.lookup('81.2.69.3'), { ...NULLS, city: OSAKA.city, country: 'JP', lat: OSAKA.lat, lon: OSAKA.lon });
    assert.deepEqual(r.lookup('81.2.70.1'), { ...NULLS, country: 'AQ' });
  });

  test('IPv4-mapped IPv6 addresses (dual-stack sockets) are looked up and labelled as IPv4', async () => {
    const r = await resolver({ databases: [cityDb], defaults: [{ path: defaultDb }] });
    assert.deepEqual(r.lookup('::ffff:81.2.69.160'), r.lookup('81.2.69.160'));
    assert.equal(r.lookup('::ffff:10.1.2.3').label, 'private');
    assert.equal(r.lookup('::ffff:127.0.0.1').label, 'loopback');
  });

  describe('special-purpose ranges: labelled, never looked up in the default databases', () => {
    // [first, last, label], written out from the RFCs (not derived from ranges.ts).
    const RANGES: Array<[string, string, string]> = [
      ['0.0.0.0', '0.255.255.255', 'unspecified'],
      ['10.0.0.0', '10.255.255.255', 'private'],
      ['100.64.0.0', '100.127.255.255', 'cgnat'],
      ['127.0.0.0', '127.255.255.255', 'loopback'],
      ['169.254.0.0', '169.254.255.255', 'link-local'],
      ['172.16.0.0', '172.31.255.255', 'private'],
      ['192.0.0.0', '192.0.0.255', 'reserved'],
      ['192.0.2.0', '192.0.2.255', 'documentation'],
      ['192.168.0.0', '192.168.255.255', 'private'],
      ['198.18.0.0', '198.19.255.255', 'benchmarking'],
      ['198.51.100.0', '198.51.100.255', 'documentation'],
      ['203.0.113.0', '203.0.113.255', 'documentation'],
      ['224.0.0.0', '239.255.255.255', 'multicast'],
      ['240.0.0.0', '255.255.255.254', 'reserved'],
      ['255.255.255.255', '255.255.255.255', 'broadcast'],
      ['::', '::', 'unspecified'],
      ['::1', '::1', 'loopback'],
      ['100::', '100::ffff:ffff:ffff:ffff', 'reserved'],
      ['2001:2::', '2001:2:0:ffff:ffff:ffff:ffff:ffff', 'benchmarking'],
      ['2001:db8::', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
      ['3fff::', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
      ['fc00::', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'private'],
      ['fe80::', 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'link-local'],
      ['fec0::', 'feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'private'],
      ['ff00::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast'],
    ];
    const v4 = (a: string) => a.includes('.') && !a.includes(':');
    const toBig = (a: string): bigint => {
      if (v4(a)) return a.split('.').reduce((n, p) => (n << 8n) | BigInt(p), 0n);
      const [h = '', t] = a.split('::');
      const hw = h ? h.split(':') : [];
      const tw = t ? t.split(':') : [];
      const words = t === undefined ? hw : [...hw, ...Array(8 - hw.length - tw.length).fill('0'), ...tw];
      return words.reduce((n, w) => (n << 16n) | BigInt(parseInt(w, 16)), 0n);
    };
    const fromBig = (n: bigint, four: boolean): string => {
      if (four) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
      return Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':');
    };
    const labelOf = (a: string): string | null => {
      const n = toBig(a);
      const hit = RANGES.find(([f, l]) => v4(f) === v4(a) && toBig(f) <= n && n <= toBig(l));
      return hit ? hit[2] : null;
    };
    // What the stand-in default database covers (IPv4: all of it; IPv6: its blocks and ::/96,
    // where an IPv6 tree keeps IPv4).
    const V6_COVER: Array<[bigint, number]> = [['::', 96], ['100::', 8], ['2000::', 3], ['f000::', 5], ['f800::', 6], ['fc00::', 6]].map(([a, p]) => [toBig(a as string), p as number]);
    const covered = (a: string) => v4(a) || V6_COVER.some(([net, p]) => toBig(a) >> BigInt(128 - p) === net >> BigInt(128 - p));

    test('first, middle and last address of each range, and the addresses just outside it', async () => {
      const r = await resolver({ defaults: [{ path: defaultDb }] });
      let checked = 0;
      for (const [first, last, label] of RANGES) {
        const four = v4(first);
        const max = four ? 0xffffffffn : (1n << 128n) - 1n;
        const lo = toBig(first);
        const hi = toBig(last);
        for (const n of [lo, (lo + hi) / 2n, hi]) {
          const a = fromBig(n, four);
          assert.deepEqual(r.lookup(a), { ...NULLS, label }, `${a} in ${first}-${last}`);
          checked++;
        }
        for (const n of [lo - 1n, hi + 1n]) {
          if (n < 0n || n > max) continue;
          const a = fromBig(n, four);
          const expected = labelOf(a);
          const got = r.lookup(a);
          assert.equal(got.label, expected, `${a} just outside ${first}-${last}`);
          assert.equal(got.country, expected === null && covered(a) ? 'AQ' : null, `${a}: looked up in the default only when unlabelled`);
          checked++;
        }
      }
      assert.ok(checked > 100);
    });

    test('ordinary public addresses carry no label', async () => {
      const r = await resolver({ defaults: [{ path: defaultDb }] });
      for (const a of ['8.8.8.8', '1.1.1.1', '100.63.255.255', '100.128.0.0', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e']) {
        assert.deepEqual(r.lookup(a), { ...NULLS, country: 'AQ' }, a);
      }
    });
  });

  test('answers are cached in a bounded LRU; the cache never outgrows its size', async () => {
    const r = await resolver({ databases: [cityDb], defaultDatabases: false, cacheSize: 100 });
    const first = r.lookup('81.2.69.160');
    assert.equal(r.lookup('81.2.69.160'), first, 'the same (frozen) answer from the cache');
    assert.ok(Object.isFrozen(first));
    assert.deepEqual(r.stats(), { lookups: 2, cacheMisses: 1, cached: 1, cacheMax: 100 });
    for (let i = 0; i < 1000; i++) r.lookup(`81.2.${i >> 8}.${i & 255}`);
    assert.deepEqual(r.stats(), { lookups: 1002, cacheMisses: 1001, cached: 100, cacheMax: 100 });
    r.lookup('81.2.69.160');
    assert.equal(r.stats().cacheMisses, 1002, 'evicted by the 1,000 newer addresses, so looked up again');
  });

  test('bad input and bad files are errors that say what is wrong', async () => {
    const r = await resolver({ databases: [cityDb], defaultDatabases: false });
    assert.throws(() => r.lookup('not-an-address'), (e: Error) => e instanceof GeoInputError && /not an IP address: "not-an-address"/.test(e.message));
    assert.throws(() => r.lookup('81.2.69.160/24'), GeoInputError);
    await assert.rejects(GeoResolver.open({ databases: [path.join(dir, 'missing.mmdb')], defaultDatabases: false }), (e: Error) => e instanceof GeoDatabaseError && /missing\.mmdb: no such file/.test(e.message));
    await assert.rejects(GeoResolver.open({ databases: ['relative.mmdb'], defaultDatabases: false }), /relative\.mmdb: must be an absolute path/);
    const junk = path.join(dir, 'junk.mmdb');
    fs.writeFileSync(junk, 'this is not an MMDB file');
    await assert.rejects(GeoResolver.open({ databases: [junk], defaultDatabases: false }), /junk\.mmdb: not a readable MMDB file/);
    await assert.rejects(GeoResolver.open({ defaultDatabases: false, cacheSize: 0 }), /cacheSize must be a positive integer/);
  });

  test('with watch on, a database replaced on disk is reloaded and cached answers dropped', { timeout: 30_000 }, async () => {
    const file = path.join(dir, 'watched.mmdb');
    fs.copyFileSync(cityDb, file);
    const r = await resolver({ databases: [file], defaultDatabases: false, watch: true });
    assert.equal(r.lookup('81.2.69.160').city, OSAKA.city);
    const next = writeMmdb([{ network: '81.2.69.0/24', data: cityRecord(NAIROBI) }], { dir, name: 'next.mmdb' });
    fs.renameSync(next, file); // what geoipupdate does
    const deadline = Date.now() + 20_000;
    while (r.lookup('81.2.69.160').city !== NAIROBI.city && Date.now() < deadline) await new Promise((res) => setTimeout(res, 250));
    assert.equal(r.lookup('81.2.69.160').city, NAIROBI.city);
  });
});

// SPDX-License-Identifier: Apache-2.0
// ui.home / --home: "LAT,LON[,NAME]", checked through the configuration loader as a user's
// file would be, and errors that name the value and what was expected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseHome } from '../../../../daemon/src/config/home.js';
import { loadConfig } from '../../../../daemon/src/config/load.js';

test('ui.home parses "LAT,LON" and "LAT,LON,NAME"; "" is no home', () => {
  assert.deepEqual(parseHome('48.8566,2.3522'), { lat: 48.8566, lon: 2.3522, name: null });
  assert.deepEqual(parseHome(' -33.87 , 151.21 , Sydney, NSW '), { lat: -33.87, lon: 151.21, name: 'Sydney, NSW' });
  assert.equal(parseHome(''), null);
  assert.throws(() => parseHome('91,0'), /latitude must be a number from -90 to 90/);
  assert.throws(() => parseHome('0,180.5'), /longitude must be a number from -180 to 180/);
  assert.throws(() => parseHome('Paris'), /home "Paris": latitude/);
});

test('geo.* and ui.home in a configuration file: accepted when valid, refused naming the key when not', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfmon-geo-cfg-'));
  try {
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify({ geo: { databases: ['/var/lib/GeoIP/GeoLite2-City.mmdb'], cacheSize: 1000 }, ui: { home: '1,2,Here' } }));
    const { config } = loadConfig({ file, env: {} });
    assert.deepEqual(config.geo, { enabled: true, databases: ['/var/lib/GeoIP/GeoLite2-City.mmdb'], defaultDatabases: true, cacheSize: 1000 });
    assert.equal(config.ui.home, '1,2,Here');
    fs.writeFileSync(file, JSON.stringify({ geo: { databases: ['relative.mmdb'] } }));
    assert.throws(() => loadConfig({ file, env: {} }), /geo\.databases: must be an array of absolute paths/);
    fs.writeFileSync(file, JSON.stringify({ ui: { home: '100,0' } }));
    assert.throws(() => loadConfig({ file, env: {} }), /ui\.home: home "100,0": latitude/);
    fs.writeFileSync(file, JSON.stringify({ geo: { cacheSize: 0 } }));
    assert.throws(() => loadConfig({ file, env: {} }), /geo\.cacheSize: must be an integer from 1 to 16777216/);
    fs.writeFileSync(file, '{}');
    assert.deepEqual(loadConfig({ file, env: { EBPFMON_GEO_DATABASES: '/a.mmdb,/b.mmdb' } }).config.geo.databases, ['/a.mmdb', '/b.mmdb']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

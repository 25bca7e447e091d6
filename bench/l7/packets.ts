// SPDX-License-Identifier: Apache-2.0
// Frames for bench/l7: whole Ethernet frames as BPF_PROG_TEST_RUN hands them to TC.
// Addresses from the test ranges; nothing is sent.
function eth(type: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(type, 12);
  return b;
}

function ipv4(proto: number, l4: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h.writeUInt16BE(0x4000, 6);
  h[8] = 64;
  h[9] = proto;
  h.set([198, 18, 0, 1], 12);
  h.set([198, 18, 0, 2], 16);
  return Buffer.concat([h, l4]);
}

function ipv6(proto: number, l4: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(l4.length, 4);
  h[6] = proto;
  h[7] = 64;
  Buffer.from('fd000198000000000000000000010001', 'hex').copy(h, 8);
  Buffer.from('fd000198000000000000000000010002', 'hex').copy(h, 24);
  return Buffer.concat([h, l4]);
}

function tcp(sport: number, dport: number, payload: Buffer, flags = 0x18): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(1000, 4);
  h.writeUInt32BE(2000, 8);
  h[12] = 5 << 4;
  h[13] = flags;
  h.writeUInt16BE(64240, 14);
  return Buffer.concat([h, payload]);
}

function udp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

export interface Frame { name: string; frame: Buffer }

export function l7Frames(): { plain: Frame[]; l7: Frame[] } {
  const junk = Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'); // a first payload that is none of ours
  const dnsQuery = Buffer.from('12340100000100000000000003777777076578616d706c6504746573740000010001', 'hex');
  return {
    plain: [
      { name: 'IPv4 TCP, 75 B, non-HTTP payload', frame: Buffer.concat([eth(0x0800), ipv4(6, tcp(40000, 22, junk))]) },
      { name: 'IPv4 TCP, 54 B, pure ACK', frame: Buffer.concat([eth(0x0800), ipv4(6, tcp(40001, 443, Buffer.alloc(0), 0x10))]) },
      { name: 'IPv4 UDP, 64 B, port 4789', frame: Buffer.concat([eth(0x0800), ipv4(17, udp(40002, 4789, Buffer.alloc(22)))]) },
      { name: 'IPv6 TCP, 95 B, non-HTTP payload', frame: Buffer.concat([eth(0x86dd), ipv6(6, tcp(40003, 22, junk))]) },
    ],
    l7: [
      { name: 'HTTP GET, 157 B frame (1 small record)', frame: Buffer.concat([eth(0x0800), ipv4(6, tcp(40010, 80, Buffer.from('GET /api/v1/items/12345 HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n')))]) },
      { name: 'DNS query, 76 B frame (1 small record)', frame: Buffer.concat([eth(0x0800), ipv4(17, udp(40011, 53, dnsQuery))]) },
    ],
  };
}

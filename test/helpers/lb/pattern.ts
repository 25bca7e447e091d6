// SPDX-License-Identifier: Apache-2.0
// The LB tests' stream pattern: byte i of a /stream response (server.ts sends it,
// client.ts checks it without holding a copy).
export function pattern(i: number): number {
  return (i * 131 + (i >>> 11)) & 0xff;
}

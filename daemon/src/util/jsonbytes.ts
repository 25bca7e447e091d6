// SPDX-License-Identifier: Apache-2.0
// Writing JSON values straight into bytes, for the event rows the daemon writes at the
// machine's maximum connection rate (monitor/decoder.ts encodeRowInto): no string per row,
// no concatenation tree for the GC to copy, no UTF-8 pass over the whole notification when
// it goes to the socket. Each writer returns the position after what it wrote; the caller
// has made sure there is room. Numbers come out exactly as JSON.stringify writes them
// (test/unit/daemon/util/jsonbytes.test.ts compares them over random values).

/** `s`, which must be ASCII (addresses, ISO times, fixed names), one byte per character. */
export function putAscii(d: Uint8Array, p: number, s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) d[p + i] = s.charCodeAt(i);
  return p + n;
}

/** Bytes made once (a JSON string's UTF-8, cached by whoever made it). */
export function putBytes(d: Uint8Array, p: number, b: Uint8Array): number {
  const n = b.length;
  // A loop beats TypedArray#set's call for the few bytes most pieces are.
  if (n > 64) d.set(b, p);
  else for (let i = 0; i < n; i++) d[p + i] = b[i]!;
  return p + n;
}

const TWO31 = 2 ** 31;
const TWO53 = 2 ** 53;

/**
 * A non-negative integer (a u64 read as a number) as JSON.stringify writes it. Up to 2^53
 * the digits are exact; above, JSON writes the shortest decimal that reads back as the same
 * double, which String() makes.
 */
export function putUint(d: Uint8Array, p: number, n: number): number {
  if (n < TWO31) {
    let x = n | 0;
    let len = 1;
    for (let t = x; t >= 10; t = (t / 10) | 0) len++;
    for (let i = p + len - 1; i >= p; i--) {
      const q = (x / 10) | 0;
      d[i] = 48 + (x - q * 10);
      x = q;
    }
    return p + len;
  }
  if (n < TWO53) {
    let len = 1;
    for (let t = n; t >= 10; t = Math.floor(t / 10)) len++;
    let x = n;
    for (let i = p + len - 1; i >= p; i--) {
      const q = Math.floor(x / 10);
      d[i] = 48 + (x - q * 10);
      x = q;
    }
    return p + len;
  }
  return putAscii(d, p, String(n));
}

/** Below this many ns, `ns / 1e6` has at most 15 significant digits, which JSON writes as
 * they are (any shorter decimal would be another double): integer part, point, the six
 * digits of the remainder without trailing zeros. */
const EXACT_NS = 1e15;

/** `ns / 1e6` (nanoseconds as milliseconds, a u64 read as a number) as JSON.stringify writes it. */
export function putNsAsMs(d: Uint8Array, p: number, ns: number): number {
  if (!(ns >= 0 && ns < EXACT_NS && Number.isInteger(ns))) return putAscii(d, p, JSON.stringify(ns / 1e6));
  let q = Math.floor(ns / 1e6);
  let r = ns - q * 1e6;
  if (r < 0) {
    q--;
    r += 1e6;
  } else if (r >= 1e6) {
    q++;
    r -= 1e6;
  }
  p = putUint(d, p, q);
  if (r === 0) return p;
  d[p++] = 46; // .
  let digits = 6;
  while (r % 10 === 0) {
    r /= 10;
    digits--;
  }
  for (let i = p + digits - 1; i >= p; i--) {
    const t = Math.floor(r / 10);
    d[i] = 48 + (r - t * 10);
    r = t;
  }
  return p + digits;
}

// SPDX-License-Identifier: Apache-2.0
// Seeded pseudo-random numbers for property tests and the fuzz test (mulberry32): a failing
// seed is printed and reproduces exactly.
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

export function randBytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** A small deterministic PRNG (xorshift32) with integer helpers: failures reproduce. */
export function xorshift(seed: number): { u32: () => number; int: (n: number) => number; pick: <T>(a: readonly T[]) => T } {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { u32: next, int: (n: number) => next() % n, pick: <T>(a: readonly T[]) => a[next() % a.length]! };
}

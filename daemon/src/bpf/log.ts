// SPDX-License-Identifier: Apache-2.0
// libbpf's log, routed to pino, and captured around open/load so that a failure can
// name its cause (the verifier's last word) instead of pointing at a log dump.
import type { Logger } from 'pino';
import { LIBBPF_DEBUG, LIBBPF_INFO, LIBBPF_WARN, setLibbpfPrint } from './libbpf.js';

let capture: string[] | null = null;
let logger: Logger | null = null;
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  setLibbpfPrint((level, line) => {
    if (capture) {
      // CO-RE relocation chatter (debug level) is never the reason for a failure.
      if (level === LIBBPF_DEBUG) return;
      if (capture.length < 20000) capture.push(line);
      logger?.debug(line);
      return;
    }
    if (!logger) return;
    if (level === LIBBPF_WARN) logger.warn(line);
    else if (level === LIBBPF_INFO) logger.debug(line);
    else logger.trace(line);
  });
}

/** Sends libbpf's messages to `l` (warnings at warn, the rest at debug/trace). */
export function routeLibbpfLog(l: Logger): void {
  logger = l.child({ component: 'libbpf' });
  install();
}

/** Runs `fn` while collecting every libbpf line it causes. */
export function withCapturedLog<T>(fn: () => T): { result: T; lines: string[] } {
  install();
  const prev = capture;
  const lines: string[] = [];
  capture = lines;
  try {
    return { result: fn(), lines };
  } finally {
    capture = prev;
    if (prev) prev.push(...lines);
  }
}

export interface LoadFailure {
  program?: string;
  /** The verifier's (or libbpf's) own explanation, one line. */
  reason?: string;
  /** The verifier log of the failing program, trimmed. */
  verifierLog?: string[];
}

const NOISE = /^(processed \d+ insns|verification time|stack depth|mark_precise|from \d+ to \d+|; )/;

/** Reads a libbpf log for the failing program and the verifier's reason. */
export function explainLoadFailure(lines: string[]): LoadFailure {
  const out: LoadFailure = {};
  // libbpf prints the verifier log as one message with embedded newlines.
  const text = lines.join('\n');
  const failed = /prog '([^']+)': (?:BPF program load failed|failed to load|-- BEGIN PROG LOAD LOG --)/.exec(text);
  if (failed) out.program = failed[1];
  const begin = text.indexOf('-- BEGIN PROG LOAD LOG --');
  if (begin >= 0) {
    const end = text.indexOf('-- END PROG LOAD LOG --', begin);
    const log = text
      .slice(begin + '-- BEGIN PROG LOAD LOG --'.length, end < 0 ? undefined : end)
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    out.verifierLog = log.slice(-40);
    const meaningful = log.filter((l) => !NOISE.test(l) && !/^\d+: /.test(l) && !l.startsWith('libbpf:'));
    out.reason = meaningful.at(-1) ?? log.at(-1);
  }
  if (!out.reason) {
    // No verifier log: libbpf refused before the kernel (relocation, BTF, ELF), or the
    // kernel refused without explaining (EPERM). Take libbpf's last specific error line.
    const generic = /failed to load object|failed to load: -\d+|BPF program load failed|permission error while running as root/;
    const err = [...lines].reverse().find((l) => /(failed|error|invalid|unsupported|not found|can't|cannot)/i.test(l) && !generic.test(l));
    if (err) out.reason = err.replace(/^libbpf: /, '');
  }
  return out;
}

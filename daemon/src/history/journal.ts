// SPDX-License-Identifier: Apache-2.0
// The writer's append-only journal: every packed batch the writer thread receives is
// appended here before it is accounted, so DuckDB can commit every `commitIntervalMs`
// (seconds) instead of at every 500 ms hand-over and a kill -9 still loses only what the
// event loop had not handed over yet. Why a journal and not more commits: a DuckDB
// transaction costs about 15 ms of CPU (BEGIN, an appender per table, COMMIT), and roll-ups
// written per hand-over are a row per process per half second; a write() of the batch
// already packed costs a syscall and a copy into the page cache, which survives the death
// of the process. With `sync` (history.journalSync, the default) each append is also
// flushed to the disk (fdatasync) before the batch is accounted, and a new file's name
// (fsync of the directory), so a machine that loses power loses what a kill -9 loses: the
// last hand-over. Half a second apart, that is two flushes a second on the writer thread.
//
// Files `journal-<first seq>.bin` in the history directory, oldest first. Each starts with
// the writer's string table as it was (a `strings` record: batches refer to strings by
// number, sent once), then `batch` records, each with its sequence number. A commit stores
// the sequence number of the last batch it holds (meta `journal_seq`, same transaction);
// files whose batches are all committed are deleted. On open, batches with a higher number
// are replayed: one committed but not yet deleted is skipped, so a replay twice is a replay
// once. Record: magic, kind, payload length, CRC-32 of the payload (a torn or damaged
// tail fails it: that record and what follows in its file are dropped, and counted).
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from '../util/crc32.js';
import { ROW, type PackedBatch } from './pack.js';

const MAGIC = 0x314a4845; // 'EHJ1' little-endian
const HEADER = 16;
const KIND = { strings: 1, batch: 2 } as const;
const FILE_RE = /^journal-(\d{16})\.bin$/;

/** Flushes a directory's entries (a file created in it) to the disk. */
function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export const journalFile = (dir: string, firstSeq: number): string => path.join(dir, `journal-${String(firstSeq).padStart(16, '0')}.bin`);

export type JournalEntry =
  | { kind: 'strings'; seq: number; strings: string[] }
  | { kind: 'batch'; seq: number; batch: PackedBatch };

export interface JournalReadStats {
  files: number;
  bytes: number;
  /** Bytes that did not form a whole, intact record (a torn tail, damage), and how many
   * places that happened (each stops its file). */
  droppedBytes: number;
  damaged: number;
}

interface FileInfo {
  name: string;
  firstSeq: number;
}

function listFiles(dir: string): FileInfo[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const m = FILE_RE.exec(name);
    return m ? [{ name, firstSeq: Number(m[1]) }] : [];
  }).sort((a, b) => a.firstSeq - b.firstSeq);
}

function header(kind: number, parts: Uint8Array[]): Buffer {
  let len = 0;
  let crc = 0;
  for (const p of parts) {
    len += p.byteLength;
    crc = crc32(p, crc);
  }
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(kind, 4);
  h.writeUInt32LE(len, 8);
  h.writeUInt32LE(crc >>> 0, 12);
  return h;
}

export class Journal {
  private fd: number | null = null;
  private files: FileInfo[];
  /** Bytes of every journal file (what a commit has not released yet). */
  bytes = 0;
  /** fdatasync and directory fsync calls made, and the milliseconds they took. */
  syncs = 0;
  syncMs = 0;

  /** `sync`: flush every append and every new file to the disk (see the top of this file). */
  constructor(readonly dir: string, readonly sync = false) {
    this.files = listFiles(dir);
    for (const f of this.files) this.bytes += fileSize(path.join(dir, f.name));
  }

  /** Starts a new file whose batches begin at `nextSeq`, with the string table as the
   * batches after it expect it (`strings[0]` is the empty string, id 0). Throws (ENOSPC...). */
  rotate(nextSeq: number, strings: readonly string[]): void {
    this.closeFd();
    const name = path.basename(journalFile(this.dir, nextSeq));
    const fd = fs.openSync(path.join(this.dir, name), 'w', 0o600);
    this.fd = fd;
    if (!this.files.some((f) => f.name === name)) this.files.push({ name, firstSeq: nextSeq });
    const seq = Buffer.allocUnsafe(8);
    seq.writeDoubleLE(nextSeq - 1, 0);
    const json = Buffer.from(JSON.stringify(strings));
    this.write(KIND.strings, [seq, json]);
    // The file's name must reach the disk too; its data goes with the first batch's flush.
    if (this.sync) this.timed(() => syncDir(this.dir));
  }

  /** Appends one batch (before the writer accounts it). Throws (ENOSPC...). */
  append(seq: number, b: PackedBatch): number {
    if (this.fd === null) throw new Error('journal not open');
    const meta = Buffer.allocUnsafe(28);
    meta.writeDoubleLE(seq, 0);
    meta.writeUInt32LE(b.count, 8);
    meta.writeUInt32LE(b.firstString, 12);
    meta.writeUInt32LE(b.reset ? 1 : 0, 16);
    meta.writeDoubleLE(b.sentAt, 20);
    const json = b.strings.length ? Buffer.from(JSON.stringify(b.strings)) : EMPTY;
    const jl = Buffer.allocUnsafe(4);
    jl.writeUInt32LE(json.byteLength, 0);
    const rows = new Uint8Array(b.rows, 0, b.count * ROW);
    const n = this.write(KIND.batch, [meta, jl, json, rows]);
    if (this.sync) this.timed(() => fs.fdatasyncSync(this.fd!));
    return n;
  }

  private timed(f: () => void): void {
    const t0 = process.hrtime.bigint();
    f();
    this.syncs++;
    this.syncMs += Number(process.hrtime.bigint() - t0) / 1e6;
  }

  private write(kind: number, parts: Uint8Array[]): number {
    // One buffer, one write(): a kill -9 leaves all of it or a torn tail, which the CRC
    // finds. (The copy is a few microseconds a batch.)
    const all = Buffer.concat([header(kind, parts), ...parts]);
    let done = 0;
    while (done < all.byteLength) done += fs.writeSync(this.fd!, all, done, all.byteLength - done);
    this.bytes += done;
    return done;
  }

  /** A commit holds every batch up to `seq`: delete the files (older than the current one)
   * whose batches are all at or below it. */
  release(seq: number): void {
    for (let i = 0; i < this.files.length - 1; i++) {
      const f = this.files[i]!;
      if (this.files[i + 1]!.firstSeq - 1 > seq) break;
      const p = path.join(this.dir, f.name);
      try {
        fs.unlinkSync(p);
      } catch {
        /* gone already */
      }
      this.files.splice(i--, 1);
    }
    this.bytes = 0;
    for (const f of this.files) this.bytes += fileSize(path.join(this.dir, f.name));
  }

  /** Everything is committed and the writer stops (a clean close): no file is left. */
  removeAll(): void {
    this.closeFd();
    for (const f of this.files) {
      try {
        fs.unlinkSync(path.join(this.dir, f.name));
      } catch {
        /* gone already */
      }
    }
    this.files = [];
    this.bytes = 0;
  }

  /** The file being appended to is closed: the next append starts a new one (after a
   * failed write, whose torn bytes end that file for a reader). */
  get isOpen(): boolean {
    return this.fd !== null;
  }

  abandon(): void {
    this.closeFd();
  }

  /** Journal files present (tests, status). */
  get fileCount(): number {
    return this.files.length;
  }

  private closeFd(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      /* nothing to keep */
    }
    this.fd = null;
  }

  close(): void {
    this.closeFd();
  }

  /** Every intact record of every journal file, oldest first. A record whose magic,
   * length or CRC is wrong stops its file: its bytes and the rest of the file are counted
   * in `droppedBytes` (the next file starts from its own string table). */
  static read(dir: string): { entries: JournalEntry[]; stats: JournalReadStats } {
    const stats: JournalReadStats = { files: 0, bytes: 0, droppedBytes: 0, damaged: 0 };
    const entries: JournalEntry[] = [];
    for (const f of listFiles(dir)) {
      let buf: Buffer;
      try {
        buf = fs.readFileSync(path.join(dir, f.name));
      } catch {
        continue;
      }
      stats.files++;
      stats.bytes += buf.byteLength;
      let off = 0;
      while (off < buf.byteLength) {
        const e = off + HEADER <= buf.byteLength ? parse(buf, off) : null;
        if (!e) {
          stats.droppedBytes += buf.byteLength - off;
          stats.damaged++;
          break;
        }
        entries.push(e.entry);
        off = e.next;
      }
    }
    return { entries, stats };
  }
}

const EMPTY = Buffer.alloc(0);

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

function parse(buf: Buffer, off: number): { entry: JournalEntry; next: number } | null {
  if (buf.readUInt32LE(off) !== MAGIC) return null;
  const kind = buf.readUInt32LE(off + 4);
  const len = buf.readUInt32LE(off + 8);
  const crc = buf.readUInt32LE(off + 12);
  const start = off + HEADER;
  if (start + len > buf.byteLength) return null;
  const p = buf.subarray(start, start + len);
  if (crc32(p) >>> 0 !== crc) return null;
  try {
    if (kind === KIND.strings) {
      return { entry: { kind: 'strings', seq: p.readDoubleLE(0), strings: JSON.parse(p.subarray(8).toString('utf8')) as string[] }, next: start + len };
    }
    if (kind === KIND.batch) {
      const count = p.readUInt32LE(8);
      const jl = p.readUInt32LE(28);
      const strings = jl ? (JSON.parse(p.subarray(32, 32 + jl).toString('utf8')) as string[]) : [];
      const rows = p.subarray(32 + jl);
      if (rows.byteLength !== count * ROW) return null;
      const ab = new ArrayBuffer(rows.byteLength);
      new Uint8Array(ab).set(rows);
      return {
        entry: { kind: 'batch', seq: p.readDoubleLE(0), batch: { rows: ab, count, firstString: p.readUInt32LE(12), reset: p.readUInt32LE(16) === 1, strings, sentAt: p.readDoubleLE(20) } },
        next: start + len,
      };
    }
  } catch {
    return null;
  }
  return null;
}

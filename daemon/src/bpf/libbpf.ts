// SPDX-License-Identifier: Apache-2.0
// Typed bindings to libbpf 1.x (Debian 12 ships 1.1.2) through koffi: only the calls
// ebpfmon uses, each declared once. Conventions carried over from C:
//  - int-returning calls return -errno on failure;
//  - pointer-returning calls return null and set errno (read it at once with lastErrno()).
// Pointers are BigInt and unchecked: passing a wrong one crashes the process, so only
// the wrappers in object.ts, maps.ts and tc.ts call these directly.
import koffi from 'koffi';
import { formatVaList } from '../sys/libc.js';

const lib = koffi.load('libbpf.so.1');

export type Ptr = bigint;

koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');
koffi.opaque('bpf_link');
koffi.opaque('btf');

type F<A extends unknown[], R> = (...args: A) => R;
const fn = <A extends unknown[], R>(decl: string): F<A, R> => lib.func(decl) as F<A, R>;

// --- logging ------------------------------------------------------------------------------
export const LIBBPF_WARN = 0;
export const LIBBPF_INFO = 1;
export const LIBBPF_DEBUG = 2;
const printProto = koffi.proto('int libbpf_print_fn_t(int level, const char *fmt, void *ap)');
const setPrint = fn<[Ptr | null], Ptr | null>('void *libbpf_set_print(libbpf_print_fn_t *fn)');

let printCallback: Ptr | null = null;
/**
 * Routes libbpf's log to `sink`. The callback stays registered for the life of the
 * process (C may call it at any time); an exception inside it would abort the C caller's
 * work, so it is swallowed here.
 */
export function setLibbpfPrint(sink: (level: number, line: string) => void): void {
  if (printCallback !== null) koffi.unregister(printCallback);
  printCallback = koffi.register((level: number, fmt: string, ap: unknown) => {
    try {
      sink(level, formatVaList(fmt, ap).replace(/\n$/, ''));
    } catch {
      /* never throw into C */
    }
    return 0;
  }, koffi.pointer(printProto));
  setPrint(printCallback);
}

// --- objects, programs, maps --------------------------------------------------------------
export const bpf_object__open_file = fn<[string, Buffer | null], Ptr | null>('bpf_object *bpf_object__open_file(const char *path, const void *opts)');
/** struct bpf_object_open_opts (libbpf 1.1: 80 bytes; kconfig at 40, checked by test/unit/daemon/bpf/object.test.ts). */
koffi.struct('bpf_object_open_opts', {
  sz: 'size_t', object_name: 'const char *', relaxed_maps: 'bool', pin_root_path: 'const char *', _unused: 'uint32_t',
  kconfig: 'const char *', btf_custom_path: 'const char *', kernel_log_buf: 'void *', kernel_log_size: 'size_t', kernel_log_level: 'uint32_t',
});
export interface OpenOpts {
  sz: number;
  kconfig: string | null;
}
export const OPEN_OPTS_SIZE = 80;
export const bpf_object__open_file_with = fn<[string, OpenOpts], Ptr | null>('bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)');
export const bpf_object__load = fn<[Ptr], number>('int bpf_object__load(bpf_object *obj)');
export const bpf_object__close = fn<[Ptr], void>('void bpf_object__close(bpf_object *obj)');
export const bpf_object__name = fn<[Ptr], string>('const char *bpf_object__name(const bpf_object *obj)');
export const bpf_object__find_program_by_name = fn<[Ptr, string], Ptr | null>('bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)');
export const bpf_object__find_map_by_name = fn<[Ptr, string], Ptr | null>('bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)');
export const bpf_object__next_program = fn<[Ptr, Ptr | null], Ptr | null>('bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prev)');
export const bpf_object__next_map = fn<[Ptr, Ptr | null], Ptr | null>('bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *prev)');

export const bpf_program__name = fn<[Ptr], string>('const char *bpf_program__name(const bpf_program *prog)');
export const bpf_program__section_name = fn<[Ptr], string>('const char *bpf_program__section_name(const bpf_program *prog)');
export const bpf_program__fd = fn<[Ptr], number>('int bpf_program__fd(const bpf_program *prog)');
export const bpf_program__set_autoload = fn<[Ptr, boolean], number>('int bpf_program__set_autoload(bpf_program *prog, bool autoload)');
export const bpf_program__autoload = fn<[Ptr], boolean>('bool bpf_program__autoload(const bpf_program *prog)');
export const bpf_program__type = fn<[Ptr], number>('int bpf_program__type(const bpf_program *prog)');
export const bpf_program__pin = fn<[Ptr, string], number>('int bpf_program__pin(bpf_program *prog, const char *path)');

export const bpf_map__name = fn<[Ptr], string>('const char *bpf_map__name(const bpf_map *map)');
export const bpf_map__fd = fn<[Ptr], number>('int bpf_map__fd(const bpf_map *map)');
export const bpf_map__type = fn<[Ptr], number>('int bpf_map__type(const bpf_map *map)');
export const bpf_map__key_size = fn<[Ptr], number>('uint32_t bpf_map__key_size(const bpf_map *map)');
export const bpf_map__value_size = fn<[Ptr], number>('uint32_t bpf_map__value_size(const bpf_map *map)');
export const bpf_map__max_entries = fn<[Ptr], number>('uint32_t bpf_map__max_entries(const bpf_map *map)');
export const bpf_map__map_flags = fn<[Ptr], number>('uint32_t bpf_map__map_flags(const bpf_map *map)');
export const bpf_map__set_max_entries = fn<[Ptr, number], number>('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)');
export const bpf_map__reuse_fd = fn<[Ptr, number], number>('int bpf_map__reuse_fd(bpf_map *map, int fd)');
export const bpf_map__pin = fn<[Ptr, string], number>('int bpf_map__pin(bpf_map *map, const char *path)');
export const bpf_map__is_internal = fn<[Ptr], boolean>('bool bpf_map__is_internal(const bpf_map *map)');
export const bpf_map__initial_value = fn<[Ptr, BigUint64Array], Ptr | null>('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *psize)');
export const bpf_map__set_initial_value = fn<[Ptr, Uint8Array, number], number>('int bpf_map__set_initial_value(bpf_map *map, const uint8_t *data, size_t size)');

// --- attachment ---------------------------------------------------------------------------
export const bpf_program__attach = fn<[Ptr], Ptr | null>('bpf_link *bpf_program__attach(const bpf_program *prog)');
export const bpf_program__attach_tracepoint = fn<[Ptr, string, string], Ptr | null>('bpf_link *bpf_program__attach_tracepoint(const bpf_program *prog, const char *category, const char *name)');
export const bpf_program__attach_raw_tracepoint = fn<[Ptr, string], Ptr | null>('bpf_link *bpf_program__attach_raw_tracepoint(const bpf_program *prog, const char *name)');
export const bpf_program__attach_cgroup = fn<[Ptr, number], Ptr | null>('bpf_link *bpf_program__attach_cgroup(const bpf_program *prog, int cgroup_fd)');
export const bpf_program__attach_xdp = fn<[Ptr, number], Ptr | null>('bpf_link *bpf_program__attach_xdp(const bpf_program *prog, int ifindex)');
export const bpf_program__attach_iter = fn<[Ptr, Buffer | null], Ptr | null>('bpf_link *bpf_program__attach_iter(const bpf_program *prog, const void *opts)');
// struct bpf_uprobe_opts as libbpf 1.1 declares it (1.2 appends attach_mode; `sz` tells
// libbpf which fields the caller knows). func_name: libbpf resolves the symbol in the file.
koffi.struct('bpf_uprobe_opts', { sz: 'size_t', ref_ctr_offset: 'size_t', bpf_cookie: 'uint64_t', retprobe: 'bool', func_name: 'const char *' });
export interface UprobeOpts { sz: number; ref_ctr_offset: number; bpf_cookie: bigint; retprobe: boolean; func_name: string | null }
export const UPROBE_OPTS_SIZE = koffi.sizeof('bpf_uprobe_opts');
export const bpf_program__attach_uprobe_opts = fn<[Ptr, number, string, number, UprobeOpts], Ptr | null>('bpf_link *bpf_program__attach_uprobe_opts(const bpf_program *prog, int pid, const char *binary_path, size_t func_offset, const bpf_uprobe_opts *opts)');

export const bpf_link__fd = fn<[Ptr], number>('int bpf_link__fd(const bpf_link *link)');
export const bpf_link__pin = fn<[Ptr, string], number>('int bpf_link__pin(bpf_link *link, const char *path)');
export const bpf_link__unpin = fn<[Ptr], number>('int bpf_link__unpin(bpf_link *link)');
export const bpf_link__open = fn<[string], Ptr | null>('bpf_link *bpf_link__open(const char *path)');
export const bpf_link__disconnect = fn<[Ptr], void>('void bpf_link__disconnect(bpf_link *link)');
export const bpf_link__destroy = fn<[Ptr], number>('int bpf_link__destroy(bpf_link *link)');
export const bpf_link_update = fn<[number, number, Buffer | null], number>('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)');
export const bpf_link_detach = fn<[number], number>('int bpf_link_detach(int link_fd)');
/** struct bpf_link_create_opts is passed as a Buffer: { size_t sz; u32 flags; ... } */
export const bpf_link_create = fn<[number, number, number, Buffer | null], number>('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)');
export const bpf_iter_create = fn<[number], number>('int bpf_iter_create(int link_fd)');

// TC through netlink (libbpf 1.1 has no tcx). Structs are passed as Buffers laid out
// by tc.ts: struct bpf_tc_hook (24 bytes) and struct bpf_tc_opts (32 bytes).
export const bpf_tc_hook_create = fn<[Buffer], number>('int bpf_tc_hook_create(void *hook)');
export const bpf_tc_hook_destroy = fn<[Buffer], number>('int bpf_tc_hook_destroy(void *hook)');
export const bpf_tc_attach = fn<[Buffer, Buffer], number>('int bpf_tc_attach(const void *hook, void *opts)');
export const bpf_tc_detach = fn<[Buffer, Buffer], number>('int bpf_tc_detach(const void *hook, const void *opts)');
export const bpf_tc_query = fn<[Buffer, Buffer], number>('int bpf_tc_query(const void *hook, void *opts)');

// --- file descriptors, pins, info ---------------------------------------------------------
export const bpf_obj_get = fn<[string], number>('int bpf_obj_get(const char *pathname)');
export const bpf_obj_pin = fn<[number, string], number>('int bpf_obj_pin(int fd, const char *pathname)');
export const bpf_obj_get_info_by_fd = fn<[number, Buffer, Uint32Array], number>('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *info_len)');
/** Loads raw instructions (generated at run time: the capture filter engine). opts is struct
 * bpf_prog_load_opts (104 bytes in libbpf 1.1), laid out by daemon/src/capture/progload.ts. */
export const bpf_prog_load = fn<[number, string, string, Buffer, number, Buffer | null], number>('int bpf_prog_load(int prog_type, const char *prog_name, const char *license, const void *insns, size_t insn_cnt, const void *opts)');
export const bpf_prog_get_fd_by_id = fn<[number], number>('int bpf_prog_get_fd_by_id(uint32_t id)');
export const bpf_map_get_fd_by_id = fn<[number], number>('int bpf_map_get_fd_by_id(uint32_t id)');
export const bpf_link_get_fd_by_id = fn<[number], number>('int bpf_link_get_fd_by_id(uint32_t id)');
export const bpf_prog_get_next_id = fn<[number, Uint32Array], number>('int bpf_prog_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)');
export const bpf_link_get_next_id = fn<[number, Uint32Array], number>('int bpf_link_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)');
export const bpf_map_create = fn<[number, string | null, number, number, number, Buffer | null], number>('int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)');
export const bpf_enable_stats = fn<[number], number>('int bpf_enable_stats(int type)');

// --- map access (keys and values are caller-owned buffers) --------------------------------
export const bpf_map_lookup_elem = fn<[number, Uint8Array, Uint8Array], number>('int bpf_map_lookup_elem(int fd, const void *key, void *value)');
export const bpf_map_update_elem = fn<[number, Uint8Array, Uint8Array, number], number>('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)');
export const bpf_map_delete_elem = fn<[number, Uint8Array], number>('int bpf_map_delete_elem(int fd, const void *key)');
export const bpf_map_get_next_key = fn<[number, Uint8Array | null, Uint8Array], number>('int bpf_map_get_next_key(int fd, const void *key, void *next_key)');
export const bpf_map_lookup_batch = fn<[number, Uint8Array | null, Uint8Array, Uint8Array, Uint8Array, Uint32Array, Buffer | null], number>('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, const void *opts)');
export const bpf_map_lookup_and_delete_batch = fn<[number, Uint8Array | null, Uint8Array, Uint8Array, Uint8Array, Uint32Array, Buffer | null], number>('int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, const void *opts)');
export const bpf_map_delete_batch = fn<[number, Uint8Array, Uint32Array, Buffer | null], number>('int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const void *opts)');
export const bpf_map_update_batch = fn<[number, Uint8Array, Uint8Array, Uint32Array, Buffer | null], number>('int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const void *opts)');

// --- perf event rings (capture: daemon/src/capture/perfbuf.ts reads the mmapped pages itself) ---
koffi.opaque('perf_buffer');
const perfEventProto = koffi.proto('int perf_buffer_event_fn(void *ctx, int cpu, void *event)');
export const perfEventFnType = koffi.pointer(perfEventProto);
export const perf_buffer__new_raw = fn<[number, number, Buffer, unknown, null, null], Ptr | null>('perf_buffer *perf_buffer__new_raw(int map_fd, size_t page_cnt, void *attr, perf_buffer_event_fn *event_cb, void *ctx, const void *opts)');
export const perf_buffer__free = fn<[Ptr], void>('void perf_buffer__free(perf_buffer *pb)');
export const perf_buffer__buffer_cnt = fn<[Ptr], number>('size_t perf_buffer__buffer_cnt(const perf_buffer *pb)');
export const perf_buffer__buffer_fd = fn<[Ptr, number], number>('int perf_buffer__buffer_fd(const perf_buffer *pb, size_t buf_idx)');
export const perf_buffer__buffer = fn<[Ptr, number, BigUint64Array, BigUint64Array], number>('int perf_buffer__buffer(perf_buffer *pb, int buf_idx, _Out_ uint64_t *buf, _Out_ uint64_t *buf_size)');

// --- test runs (benchmarks, tests) --------------------------------------------------------
export const bpf_prog_test_run_opts = fn<[number, Buffer], number>('int bpf_prog_test_run_opts(int prog_fd, void *opts)');

// --- BTF (the layout check reads the objects' own type information) -----------------------
export const btf__parse = fn<[string, null], Ptr | null>('btf *btf__parse(const char *path, void *btf_ext)');
export const btf__load_vmlinux_btf = fn<[], Ptr | null>('btf *btf__load_vmlinux_btf(void)');
export const btf__free = fn<[Ptr], void>('void btf__free(btf *btf)');
export const btf__type_cnt = fn<[Ptr], number>('uint32_t btf__type_cnt(const btf *btf)');
export const btf__type_by_id = fn<[Ptr, number], Ptr | null>('const void *btf__type_by_id(const btf *btf, uint32_t id)');
export const btf__name_by_offset = fn<[Ptr, number], string | null>('const char *btf__name_by_offset(const btf *btf, uint32_t offset)');
export const btf__find_by_name_kind = fn<[Ptr, string, number], number>('int32_t btf__find_by_name_kind(const btf *btf, const char *name, uint32_t kind)');
export const btf__resolve_size = fn<[Ptr, number], number>('int64_t btf__resolve_size(const btf *btf, uint32_t type_id)');
export const btf__resolve_type = fn<[Ptr, number], number>('int btf__resolve_type(const btf *btf, uint32_t type_id)');
export const libbpf_major_version = fn<[], number>('uint32_t libbpf_major_version(void)');
export const libbpf_minor_version = fn<[], number>('uint32_t libbpf_minor_version(void)');

/** Reads `len` bytes of C memory at `ptr` (copies). */
export function readMemory(ptr: Ptr, len: number): Buffer {
  return Buffer.from(koffi.view(ptr, len).slice(0));
}

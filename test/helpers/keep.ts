// EBPFMON_TEST_KEEP: one meaning for every test and harness. Set to anything but "" or "0"
// (the docs say `EBPFMON_TEST_KEEP=1`), what tests make on purpose for a person to look at
// (output directories, containers, guest job directories) is kept instead of removed, and
// the runner reports what is left on the machine instead of failing on it.

/** Whether EBPFMON_TEST_KEEP asks to keep test output. */
export function keepTestOutput(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.EBPFMON_TEST_KEEP;
  return v !== undefined && v !== '' && v !== '0';
}

/**
 * How to start another Node process running the same Node as the tests. Usually process.execPath;
 * under scripts/test-node24.sh, Debian's Node 24 only runs through its own loader, so that script
 * passes the whole command line in HAPCTL_TEST_NODE (a JSON array).
 */
export function nodeCommand (): { command: string, args: string[] } {
  const given = process.env.HAPCTL_TEST_NODE
  if (given === undefined || given === '') return { command: process.execPath, args: [] }
  const parts = JSON.parse(given) as string[]
  return { command: parts[0] as string, args: parts.slice(1) }
}

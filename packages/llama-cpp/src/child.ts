/**
 * Starting llama.cpp processes so that they survive what kills them by default and die with us.
 *
 * - SIGPIPE: rpc-server writes without MSG_NOSIGNAL, so a client closing early kills it (exit 141).
 *   Node resets signal dispositions in children, so a `sh` wrapper ignores SIGPIPE and then `exec`s the
 *   binary; an ignored signal stays ignored across exec (check `SigIgn` in /proc/PID/status).
 * - Dying with the agent: on Linux `setpriv --pdeathsig SIGKILL` makes the kernel kill the child when the
 *   agent dies, even by SIGKILL, where no exit handler runs. Elsewhere an exit handler kills what it can.
 */
import { accessSync, constants, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { execa, type ResultPromise } from 'execa'

/** First executable named `name` on PATH, or undefined. */
export function findOnPath(name: string, pathVariable = process.env.PATH ?? ''): string | undefined {
  for (const dir of pathVariable.split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

let setprivPath: string | null | undefined
function setpriv(): string | undefined {
  if (setprivPath === undefined) setprivPath = process.platform === 'linux' ? (findOnPath('setpriv') ?? null) : null
  return setprivPath ?? undefined
}

/** The command line that runs `file args` with SIGPIPE ignored and, where the OS can, killed when we die. */
export function wrappedCommand(file: string, args: readonly string[]): { file: string; args: string[] } {
  const shell = ['/bin/sh', '-c', 'trap "" PIPE; exec "$0" "$@"', file, ...args]
  const guard = setpriv()
  if (guard !== undefined) return { file: guard, args: ['--pdeathsig', 'SIGKILL', '--', ...shell] }
  return { file: shell[0] as string, args: shell.slice(1) }
}

/**
 * Lines of the backtrace ggml prints through gdb when it aborts (`#3 0x... in ...`, gdb's own chatter,
 * source lines it cannot find): dozens of them come after the one line that says what went wrong.
 */
export function isBacktraceNoise(line: string): boolean {
  return (
    /^#\d+\s/.test(line) ||
    /^\d+\t/.test(line) ||
    /^\[(Inferior|New LWP|Thread debugging|Detaching)/.test(line) ||
    /No such file or directory\.$/.test(line) ||
    /^(Using host libthread_db|warning: process \d+ is already traced)/.test(line)
  )
}

/** The last lines a child printed, stdout and stderr interleaved as they came. */
export class OutputRing {
  private readonly lines: string[] = []
  constructor(private readonly capacity = 200) {}
  push(line: string): void {
    this.lines.push(line)
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity)
  }
  /** The last `count` lines, without gdb's backtrace (the line before it is the one that explains). */
  tail(count = this.capacity): string[] {
    return this.lines.filter((line) => !isBacktraceNoise(line)).slice(-count)
  }
  some(predicate: (line: string) => boolean): boolean {
    return this.lines.some(predicate)
  }
}

export type Child = ResultPromise<{
  reject: false
  buffer: false
  stdin: 'ignore'
  stdout: 'pipe'
  stderr: 'pipe'
  env: NodeJS.ProcessEnv
  extendEnv: true
}>

const liveChildren = new Set<Child>()
let exitHookInstalled = false

/** Starts a supervised child: lines of its output go to `onLine`; it is killed if this process exits. */
export function spawnChild(
  file: string,
  args: readonly string[],
  onLine: (line: string, stream: 'stdout' | 'stderr') => void,
  env: NodeJS.ProcessEnv = {}
): Child {
  const command = wrappedCommand(file, args)
  const child: Child = execa(command.file, command.args, {
    reject: false,
    buffer: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    // On an abort (a lost RPC peer, say) ggml forks a copy of the process that execs gdb to print a
    // backtrace: the copy carries the same name and command line, the traced process shows as stopped (our
    // freeze check), and the attach takes seconds on a busy machine before the abort completes. The log
    // line that says why is printed before that and is all we read.
    env: { GGML_NO_BACKTRACE: '1', ...env },
    extendEnv: true
  })
  for (const stream of ['stdout', 'stderr'] as const) {
    let partial = ''
    child[stream].setEncoding('utf8')
    child[stream].on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n')
      partial = parts.pop() ?? ''
      for (const line of parts) onLine(line.replace(/\r$/, ''), stream)
    })
    child[stream].on('end', () => {
      if (partial !== '') onLine(partial, stream)
      partial = ''
    })
  }
  liveChildren.add(child)
  void child.finally(() => liveChildren.delete(child))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', () => {
      for (const c of liveChildren) c.kill('SIGKILL')
    })
  }
  return child
}

/**
 * True while a process is stopped (SIGSTOP, a debugger): it cannot answer anything, nor handle SIGTERM.
 * Read from /proc (Linux; false elsewhere), so checking disturbs nothing.
 */
export function isProcessFrozen(pid: number | undefined): boolean {
  if (pid === undefined || process.platform !== 'linux') return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2)[0]
    return state === 'T' || state === 't'
  } catch {
    return false
  }
}

/** SIGTERM, then SIGKILL after `graceMs` (at once for a frozen process). Resolves once the child has exited. */
export async function stopChild(child: Child, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  if (isProcessFrozen(child.pid)) {
    child.kill('SIGKILL')
    await child
    return
  }
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  try {
    await child
  } finally {
    clearTimeout(timer)
  }
}

/**
 * An earlier release of this repository, built in a temp dir from its git commit, to run beside this one
 * (the rolling-upgrade test). The commit comes from `test/previous-release.json` (also tagged, but a clone
 * of main need not carry tags; the commit is always in main's history).
 *
 * Dependencies: when every package the release's package-lock.json pins is in this checkout's (ours may add
 * some), its node_modules is a folder of links into this checkout's (the workspace links re-pointed at the
 * release's own packages), so no install is needed; otherwise `npm ci` installs them. Then `tsc -b` builds
 * its packages.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './agents.js'

export interface Release {
  readonly version: string
  readonly commit: string
  /** The release's CLI entry point. */
  readonly cli: string
}

interface ReleaseRecord {
  version: string
  commit: string
}

export function previousRelease(): ReleaseRecord {
  const record = JSON.parse(readFileSync(join(ROOT, 'test', 'previous-release.json'), 'utf8')) as ReleaseRecord
  if (!/^[0-9a-f]{40}$/.test(record.commit)) throw new Error(`test/previous-release.json: expected a 40-digit commit, got ${record.commit}`)
  return record
}

/** Links every entry of `from` into `to`; workspace links (relative symlinks) keep their relative target. */
function linkModules(from: string, to: string): void {
  mkdirSync(to, { recursive: true })
  for (const name of readdirSync(from)) {
    const source = join(from, name)
    const target = join(to, name)
    const stat = lstatSync(source)
    if (stat.isSymbolicLink() && !readlinkSync(source).startsWith('/')) symlinkSync(readlinkSync(source), target)
    else if (name.startsWith('@') && stat.isDirectory()) linkModules(source, target)
    else symlinkSync(source, target)
  }
}

/**
 * Whether the release's commit is in this clone; a shallow clone lacks it, and one fetch from origin is
 * tried. False: the caller says so and skips (nothing to build from), rather than failing on the clone.
 */
export function haveCommit(commit: string): boolean {
  const present = (): boolean => {
    try {
      execFileSync('git', ['-C', ROOT, 'cat-file', '-e', `${commit}^{commit}`], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  }
  if (present()) return true
  try {
    execFileSync('git', ['-C', ROOT, 'fetch', '--quiet', '--depth=1', 'origin', commit], { stdio: 'ignore', timeout: 60_000 })
  } catch {}
  return present()
}

/**
 * Whether every package the release's lockfile pins is in ours at the same version and source (ours may
 * add packages, as a new dev tool does): then this checkout's node_modules serves the release as well.
 */
export function lockedWithin(releaseLock: string, ourLock: string): boolean {
  type Lock = { packages?: Record<string, { version?: string; resolved?: string }> }
  const theirs = (JSON.parse(releaseLock) as Lock).packages ?? {}
  const ours = (JSON.parse(ourLock) as Lock).packages ?? {}
  return Object.entries(theirs).every(
    ([path, p]) => path === '' || (ours[path]?.version === p.version && ours[path]?.resolved === p.resolved)
  )
}

export function buildRelease(record: ReleaseRecord = previousRelease()): Release {
  const dir = join(tmpdir(), `sollol-release-${record.version}-${record.commit.slice(0, 12)}-${process.pid}`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const archive = execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', record.commit], { maxBuffer: 256 * 1024 * 1024 })
  execFileSync('tar', ['-x', '-C', dir], { input: archive })
  const sameLock = lockedWithin(readFileSync(join(dir, 'package-lock.json'), 'utf8'), readFileSync(join(ROOT, 'package-lock.json'), 'utf8'))
  if (sameLock) linkModules(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  else execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'ignore' })
  execFileSync(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'packages/sollol-agent'], {
    cwd: dir,
    stdio: 'pipe'
  })
  const cli = join(dir, 'packages', 'sollol-agent', 'bin', 'sollol-agent.js')
  if (!existsSync(cli)) throw new Error(`release ${record.version} (${record.commit}) has no ${cli}`)
  return { ...record, cli }
}

export function removeRelease(release: Release): void {
  rmSync(join(release.cli, '..', '..', '..', '..'), { recursive: true, force: true })
}

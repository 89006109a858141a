/**
 * Where option values come from, strongest first: command-line flags, environment (`SOLLOL_*`), the
 * config file (`--config`, default `$XDG_CONFIG_HOME/sollol-agent/config.json`), built-in defaults.
 * Commander does flags > env > default; the config file's values are installed as the defaults, after
 * going through the same parsers as flags so a bad value gets the same one-line error.
 */
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { Command, type Option } from 'commander'
import { UsageError } from './errors.js'

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config')
  return join(base, 'sollol-agent', 'config.json')
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME !== undefined && env.XDG_DATA_HOME !== '' ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share')
  return join(base, 'sollol-agent')
}

/** `--config FILE` / `--config=FILE` in argv, else SOLLOL_CONFIG; undefined = the default path, if it exists. */
export function configPathFrom(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): { path: string; explicit: boolean } {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? ''
    if (arg === '--config') return { path: argv[i + 1] ?? '', explicit: true }
    if (arg.startsWith('--config=')) return { path: arg.slice('--config='.length), explicit: true }
  }
  if (env.SOLLOL_CONFIG !== undefined && env.SOLLOL_CONFIG !== '') return { path: env.SOLLOL_CONFIG, explicit: true }
  return { path: defaultConfigPath(env), explicit: false }
}

/** Reads the config file: a JSON object of option names (camelCase, as in `rpcPort`) to values. */
export function readConfigFile(path: string, explicit: boolean): Record<string, unknown> {
  if (!existsSync(path)) {
    if (explicit) throw new UsageError(`Expected a config file at ${path}, found none`)
    return {}
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new UsageError(`Expected ${path} to be JSON, got a parse error: ${(err as Error).message}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new UsageError(`Expected ${path} to hold a JSON object of options, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}`)
  return parsed as Record<string, unknown>
}

/** The environment variable of a long flag: `--rpc-port` -> `SOLLOL_RPC_PORT`. */
export const envName = (flag: string): string =>
  `SOLLOL_${flag
    .replace(/^--(no-)?/, '')
    .replace(/-/g, '_')
    .toUpperCase()}`

const NO_ENV = new Set(['--help', '--version', '--config'])

/**
 * A commander Command whose every long option also reads its SOLLOL_* variable. Commander wires the
 * environment when an option is added, so it has to be set as the option is created.
 */
export class SollolCommand extends Command {
  override createCommand(name?: string): SollolCommand {
    return new SollolCommand(name)
  }

  override createOption(flags: string, description?: string): Option {
    const option = super.createOption(flags, description)
    if (option.long !== undefined && !NO_ENV.has(option.long)) option.env(envName(option.long))
    return option
  }
}

/**
 * Installs config-file values on `command`'s options with the source 'config', which commander lets the
 * environment and flags override (keys the command does not have are skipped).
 */
export function applyConfigDefaults(command: Command, config: Record<string, unknown>, path: string): void {
  const options = new Map((command.options as Option[]).map((o) => [o.attributeName(), o]))
  for (const [key, value] of Object.entries(config)) {
    const option = options.get(key)
    if (option === undefined) continue
    try {
      if (option.isBoolean() || option.negate) {
        if (typeof value !== 'boolean') throw new Error(`Expected ${option.long ?? key} to be true or false, got \`${String(value)}\``)
        command.setOptionValueWithSource(key, value, 'config')
      } else if (option.variadic) {
        const values = Array.isArray(value) ? value : [value]
        const parsed = values.reduce<unknown>(
          (previous, v) =>
            option.parseArg !== undefined
              ? option.parseArg(String(v), previous)
              : [...((previous as unknown[] | undefined) ?? []), String(v)],
          undefined
        )
        command.setOptionValueWithSource(key, parsed, 'config')
      } else {
        command.setOptionValueWithSource(
          key,
          option.parseArg !== undefined ? option.parseArg(String(value), undefined) : String(value),
          'config'
        )
      }
    } catch (err) {
      throw new UsageError(`${path}: ${(err as Error).message}`)
    }
  }
}

/** One config file serves every command: applies it to all, and rejects keys no command knows. */
export function applyConfig(program: Command, config: Record<string, unknown>, path: string): void {
  const commands = [program, ...program.commands]
  const known = new Set(commands.flatMap((c) => (c.options as Option[]).map((o) => o.attributeName())))
  const unknown = Object.keys(config).filter((k) => !known.has(k))
  if (unknown.length > 0)
    throw new UsageError(`Unknown option \`${unknown[0]}\` in ${path}; expected names like rpcPort, cluster, maxMemory`)
  for (const command of commands) applyConfigDefaults(command, config, path)
}
